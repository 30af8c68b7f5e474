"""Tenant fields of strategy and publishing: strategy versions, campaigns, posts, calendar, crisis."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from api import ids
from api.context import Context
from api.errors import BadInput
from api.inputs import instant
from api.pagination import Keyset, page_size
from api.publishing.types import (
    CalendarEntry,
    Campaign,
    CampaignConnection,
    CampaignEdge,
    Crisis,
    Post,
    PostConnection,
    PostEdge,
    PostFilter,
    Strategy,
    load_channel,
)
from projections.base import dumps

# Statuses that put a post on the calendar: it is going out, went out, or was meant to.
CALENDAR_STATUSES = ["SCHEDULED", "HELD", "PUBLISHING", "PUBLISHED", "FAILED"]
MAX_CALENDAR_DAYS = 366


async def crisis(ctx: Context, key: str, row: Any) -> Crisis | None:
    if row["crisis_since"] is None:
        return None
    held = await ctx.db.fetchval("SELECT count(*) FROM read.posts WHERE tenant_id = $1 AND status = 'HELD'", key)
    return Crisis(
        since=row["crisis_since"], reason=row["crisis_reason"], held_posts=int(held), activated_by_id=row["crisis_by"]
    )


async def strategy(ctx: Context, key: str, at: datetime | None = None) -> Strategy | None:
    if at is None:
        row = await ctx.db.fetchrow(
            "SELECT * FROM read.strategies WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1", key
        )
    else:
        row = await ctx.db.fetchrow(
            "SELECT * FROM read.strategies WHERE tenant_id = $1 AND effective_from <= $2 "
            "ORDER BY version DESC LIMIT 1",
            key,
            at,
        )
    return Strategy.from_row(row) if row else None


async def strategy_versions(ctx: Context, key: str) -> list[Strategy]:
    rows = await ctx.db.fetch("SELECT * FROM read.strategies WHERE tenant_id = $1 ORDER BY version", key)
    return [Strategy.from_row(r) for r in rows]


_CAMPAIGNS = Keyset("read.campaigns")
_POSTS = Keyset("read.posts", descending=True)


async def campaigns(ctx: Context, key: str, first: int | None, after: str | None) -> CampaignConnection:
    rows, info = await _CAMPAIGNS.page(ctx.db, ["tenant_id = $1"], [key], first, after)
    return CampaignConnection(
        edges=[CampaignEdge(cursor=_CAMPAIGNS.cursor(r), node=Campaign.from_row(r)) for r in rows], page_info=info
    )


def _raw_in_tenant(value: str, type_name: str, key: str, field: str) -> str | None:
    """The raw id of a filter argument; None when it names something of another tenant (matches nothing)."""
    raw = ids.decode(value, type_name, field=field)[1]
    return raw if ids.scope(raw) == key else None


async def posts(ctx: Context, key: str, first: int | None, after: str | None, flt: PostFilter | None,
                timezone: str = "UTC") -> PostConnection:
    """A page of the tenant's posts, newest first (a filter time without an offset is the tenant's)."""
    page_size(first)  # a bad `first` is refused before anything is read
    where = ["tenant_id = $1"]
    args: list[Any] = [key]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if flt is not None:
        if flt.status:
            where.append(f"status = ANY({arg([s.value for s in flt.status])})")
        if flt.channel_id:
            channel = _raw_in_tenant(flt.channel_id, "Channel", key, "filter.channelId")
            where.append(f"variants @> {arg(dumps([{'channel_id': channel}]))}::jsonb")
        if flt.campaign_id:
            where.append(f"campaign_id = {arg(_raw_in_tenant(flt.campaign_id, 'Campaign', key, 'filter.campaignId'))}")
        start, end = (instant(t, timezone) if t else None for t in (flt.from_, flt.to))
        if start and end and start > end:
            raise BadInput("filter.from must not be after filter.to")
        if start:
            where.append(f"scheduled_at >= {arg(start)}")
        if end:
            where.append(f"scheduled_at < {arg(end)}")
    total = await ctx.db.fetchval(f"SELECT count(*) FROM read.posts WHERE {' AND '.join(where)}", *args)
    rows, info = await _POSTS.page(ctx.db, where, args, first, after)
    return PostConnection(edges=[PostEdge(cursor=_POSTS.cursor(r), node=Post.from_row(r)) for r in rows],
                          page_info=info, total_count=int(total or 0))


async def calendar(ctx: Context, key: str, start: datetime, end: datetime) -> list[CalendarEntry]:
    """One entry per post and channel, at its scheduled time (or the time it went out), in [start, end)."""
    if end <= start:
        raise BadInput("to must be after from")
    if end - start > timedelta(days=MAX_CALENDAR_DAYS):
        raise BadInput(f"the calendar spans at most {MAX_CALENDAR_DAYS} days")
    rows = await ctx.db.fetch(
        "SELECT * FROM read.posts WHERE tenant_id = $1 AND status = ANY($2) AND scheduled_at >= $3 "
        "AND scheduled_at < $4 ORDER BY scheduled_at, id LIMIT 5000",
        key,
        CALENDAR_STATUSES,
        start,
        end,
    )
    pairs = [(post, variant) for post in map(Post.from_row, rows) for variant in post.variants()]
    channels = await asyncio.gather(*(load_channel(ctx, variant.channel_id) for _, variant in pairs))
    return [
        CalendarEntry(post=post, channel=channel, at=variant.published_at or post.row["scheduled_at"])
        for (post, variant), channel in zip(pairs, channels, strict=True)
        if channel is not None
    ]
