"""Tenant fields of the moderation inbox: the policy in force, the queue, the statistics."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from api import ids
from api.context import Context
from api.errors import BadInput
from api.moderation.types import (
    Interaction,
    InteractionConnection,
    InteractionEdge,
    ModerationFilter,
    ModerationPolicy,
    ModerationStats,
)
from api.pagination import Keyset, page_size
from domain.moderation import DEFAULT_TERMS


async def moderation_policy(ctx: Context, key: str) -> ModerationPolicy:
    row = await ctx.db.fetchrow(
        "SELECT version, terms, effective_from FROM read.moderation_policies WHERE tenant_id = $1 "
        "ORDER BY version DESC LIMIT 1",
        key,
    )
    if row is None:
        return ModerationPolicy.from_terms(0, DEFAULT_TERMS.as_dict(), None)
    terms = json.loads(row["terms"]) if isinstance(row["terms"], str) else row["terms"]
    return ModerationPolicy.from_terms(row["version"], terms, row["effective_from"])


def _filter(key: str, flt: ModerationFilter | None, args: list[Any]) -> list[str]:
    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = [f"tenant_id = {arg(key)}"]
    if flt is None:
        return where
    if flt.status:
        where.append(f"status = ANY({arg([s.value for s in flt.status])})")
    if flt.kind:
        where.append(f"kind = ANY({arg([k.value for k in flt.kind])})")
    if flt.channel_id:
        where.append(f"channel_id = {arg(ids.decode(flt.channel_id, 'Channel', field='filter.channelId')[1])}")
    if flt.assignee_id:
        where.append(f"assignee_id = {arg(ids.decode(flt.assignee_id, 'User', field='filter.assigneeId')[1])}")
    if flt.overdue is not None:
        overdue = "(answered_at IS NULL AND due_by < now())"
        where.append(overdue if flt.overdue else f"NOT {overdue}")
    return where


_QUEUE = Keyset("read.interactions", at="received_at", descending=True)


async def moderation_queue(
    ctx: Context, key: str, first: int | None, after: str | None, flt: ModerationFilter | None
) -> InteractionConnection:
    page_size(first)  # a bad `first` is refused before anything is read
    args: list[Any] = []
    where = _filter(key, flt, args)
    total = await ctx.db.fetchval(f"SELECT count(*) FROM read.interactions WHERE {' AND '.join(where)}", *args)
    rows, info = await _QUEUE.page(ctx.db, where, args, first, after)
    return InteractionConnection(
        edges=[InteractionEdge(cursor=_QUEUE.cursor(r), node=Interaction.from_row(r)) for r in rows],
        page_info=info, total_count=int(total or 0),
    )


async def moderation_stats(ctx: Context, key: str, start: datetime, end: datetime) -> ModerationStats:
    if end <= start:
        raise BadInput("to must be after from")
    row = await ctx.db.fetchrow(
        "SELECT count(*) AS received, count(*) FILTER (WHERE status = 'DECIDED') AS decided, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM answered_at - received_at) / 60) "
        "FILTER (WHERE answered_at IS NOT NULL) AS median, "
        "count(*) FILTER (WHERE answered_at IS NULL AND due_by < now()) AS overdue "
        "FROM read.interactions WHERE tenant_id = $1 AND received_at >= $2 AND received_at < $3",
        key, start, end,
    )
    decisions = await ctx.db.fetch(
        "SELECT last.decision, count(*) AS n FROM read.interactions i, LATERAL ("
        "  SELECT d->>'decision' AS decision FROM jsonb_array_elements(i.decisions) WITH ORDINALITY AS x(d, o)"
        "  WHERE NOT (d->>'overturned')::boolean ORDER BY o DESC LIMIT 1) last "
        "WHERE i.tenant_id = $1 AND i.received_at >= $2 AND i.received_at < $3 GROUP BY last.decision",
        key, start, end,
    )
    assert row is not None
    return ModerationStats(
        received=row["received"],
        decided=row["decided"],
        by_decision={r["decision"]: r["n"] for r in decisions},
        median_response_minutes=None if row["median"] is None else round(float(row["median"]), 2),
        overdue=row["overdue"],
    )
