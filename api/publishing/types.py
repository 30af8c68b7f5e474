"""GraphQL types of strategy and publishing: strategies, campaigns, posts, approvals, the calendar, crisis."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api import ids
from api.access import INHERITED, inherit_permissions, secured
from api.context import Context
from api.directory.types import Channel, Node, User, loader
from api.history.types import HistoryEvent
from api.pagination import PageInfo
from domain.post import PostStatus as DomainPostStatus
from domain.post import Temperature as DomainTemperature
from domain.strategy import Intent as DomainIntent
from projections import figures

PostStatus = strawberry.enum(DomainPostStatus, name="PostStatus")
Temperature = strawberry.enum(DomainTemperature, name="Temperature")
Intent = strawberry.enum(DomainIntent, name="Intent")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def gid(type_name: str, raw: str | None) -> strawberry.ID | None:
    return None if raw is None else strawberry.ID(ids.encode(type_name, raw))


# ---------------------------------------------------------------- people, by id, in one query per request
async def _users_by_id(ctx: Context, keys: list[str]) -> list[User | None]:
    principal = ctx.require_principal()
    rows = await ctx.db.fetch(
        "SELECT user_id, email, display_name FROM auth.principals WHERE user_id = ANY($1) AND agency_id = $2",
        keys,
        principal.agency_id,
    )
    found = {
        r["user_id"]: User(
            id=strawberry.ID(ids.encode("User", r["user_id"])),
            email=r["email"],
            display_name=r["display_name"],
            raw_id=r["user_id"],
        )
        for r in rows
    }
    return [found.get(k) for k in keys]


async def load_user(ctx: Context, user_id: str | None) -> User | None:
    """A user of the caller's agency by raw id (None for rules, the system, or another agency's user)."""
    if not user_id or ids.scope(user_id) != ctx.require_principal().agency_id:
        return None
    return await loader(ctx, "users", _users_by_id).load(user_id)  # type: ignore[no-any-return]


async def _channels_by_id(ctx: Context, keys: list[str]) -> list[Channel | None]:
    # By (tenant, id), the table's key: by id alone the lookup read every tenant's channels (bench B5b).
    rows = await ctx.db.fetch("SELECT * FROM read.channels WHERE tenant_id = ANY($2) AND id = ANY($1)", keys,
                              sorted({ids.scope(k) for k in keys}))
    found = {r["id"]: Channel.from_row(r) for r in rows}
    return [found.get(k) for k in keys]


async def load_channel(ctx: Context, channel_id: str) -> Channel | None:
    return await loader(ctx, "channels_by_id", _channels_by_id).load(channel_id)  # type: ignore[no-any-return]


# ---------------------------------------------------------------- strategy
@inherit_permissions
@strawberry.type
class Objective:
    id: strawberry.ID
    title: str
    intent: Intent  # type: ignore[valid-type]
    metric: str
    channel_id: strawberry.ID | None
    baseline: float | None
    target: float
    deadline: datetime | None

    @classmethod
    def from_data(cls, o: dict[str, Any]) -> Objective:
        return cls(
            id=strawberry.ID(ids.encode("Objective", o["id"])),
            title=o["title"],
            intent=DomainIntent(o["intent"]),
            metric=o["metric"],
            channel_id=gid("Channel", o.get("channel_id")),
            baseline=o.get("baseline"),
            target=o["target"],
            deadline=_when(o.get("deadline")),
        )


@inherit_permissions
@strawberry.type
class Persona:
    id: strawberry.ID
    name: str
    description: str | None
    channel_ids: list[strawberry.ID]


@inherit_permissions
@strawberry.type
class ChannelFrequency:
    channel_id: strawberry.ID
    posts_per_week: float


@inherit_permissions
@strawberry.type
class EditorialLine:
    tone: str | None
    themes: list[str]
    hot_share: float | None
    posts_per_week: list[ChannelFrequency]


@inherit_permissions
@strawberry.type
class Strategy:
    version: int
    effective_from: datetime
    reason: str | None
    positioning: str | None
    objectives: list[Objective]
    personas: list[Persona]
    editorial_line: EditorialLine
    revised_by_id: strawberry.Private[str | None]

    @strawberry.field(**secured(INHERITED))
    async def revised_by(self, info: Info[Context, None]) -> User | None:
        return await load_user(info.context, self.revised_by_id)

    @classmethod
    def from_row(cls, row: Any) -> Strategy:
        line = _json(row["editorial_line"])
        return cls(
            version=row["version"],
            effective_from=row["effective_from"],
            reason=row["reason"],
            positioning=row["positioning"],
            objectives=[Objective.from_data(o) for o in _json(row["objectives"])],
            personas=[
                Persona(
                    id=strawberry.ID(ids.encode("Persona", p["id"])),
                    name=p["name"],
                    description=p.get("description"),
                    channel_ids=[strawberry.ID(ids.encode("Channel", c)) for c in p.get("channel_ids", [])],
                )
                for p in _json(row["personas"])
            ],
            editorial_line=EditorialLine(
                tone=line.get("tone"),
                themes=list(line.get("themes", [])),
                hot_share=line.get("hot_share"),
                posts_per_week=[
                    ChannelFrequency(channel_id=strawberry.ID(ids.encode("Channel", c)), posts_per_week=n)
                    for c, n in line.get("posts_per_week", [])
                ],
            ),
            revised_by_id=row["revised_by"],
        )


# ---------------------------------------------------------------- campaigns
@inherit_permissions
@strawberry.type
class Campaign(Node):
    id: strawberry.ID
    name: str
    hashtag: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    objective_ids: list[strawberry.ID]
    budget: float | None
    raw_id: strawberry.Private[str]

    @classmethod
    def from_row(cls, row: Any) -> Campaign:
        return cls(
            id=strawberry.ID(ids.encode("Campaign", row["id"])),
            name=row["name"],
            hashtag=row["hashtag"],
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            objective_ids=[strawberry.ID(ids.encode("Objective", o)) for o in _json(row["objective_ids"])],
            budget=row["budget"],
            raw_id=row["id"],
        )


@inherit_permissions
@strawberry.type
class CampaignEdge:
    cursor: str
    node: Campaign


@inherit_permissions
@strawberry.type
class CampaignConnection:
    edges: list[CampaignEdge]
    page_info: PageInfo


async def _campaigns_by_id(ctx: Context, keys: list[str]) -> list[Campaign | None]:
    rows = await ctx.db.fetch("SELECT * FROM read.campaigns WHERE tenant_id = ANY($2) AND id = ANY($1)", keys,
                              sorted({ids.scope(k) for k in keys}))
    found = {r["id"]: Campaign.from_row(r) for r in rows}
    return [found.get(k) for k in keys]


async def _engagement_by_post(ctx: Context, keys: list[str]) -> list[figures.Rate | None]:
    found = await figures.engagement_by_post(ctx.db, keys)
    return [found.get(k) for k in keys]


# ---------------------------------------------------------------- posts
@inherit_permissions
@strawberry.type
class PostVariant:
    body: str
    media_urls: list[str]
    external_id: str | None
    external_url: str | None
    published_at: datetime | None
    error: str | None
    channel_id: strawberry.Private[str]

    @strawberry.field(**secured(INHERITED))
    async def channel(self, info: Info[Context, None]) -> Channel:
        channel = await load_channel(info.context, self.channel_id)
        assert channel is not None, "a variant's channel is a channel of the same tenant"
        return channel


@inherit_permissions
@strawberry.type
class Approval:
    step: str
    at: datetime
    approved: bool
    comment: str | None
    submission: int = strawberry.field(description="Which submission of the post this review answered (1, 2, ...).")
    policy_version: int | None = strawberry.field(description="The approval policy the post was submitted under.")
    strategy_version: int | None = strawberry.field(description="The strategy in force when this review was given.")
    on_behalf_of: strawberry.ID | None = strawberry.field(description="The tenant agency staff acted for.")
    by_id: strawberry.Private[str]

    @strawberry.field(**secured(INHERITED))
    async def by(self, info: Info[Context, None]) -> User:
        user = await load_user(info.context, self.by_id)
        if user is None:
            return User(id=strawberry.ID(ids.encode("User", self.by_id)), email="", display_name="", raw_id=self.by_id)
        return user


@inherit_permissions
@strawberry.type
class Post(Node):
    id: strawberry.ID
    status: PostStatus  # type: ignore[valid-type]
    version: int
    objective_id: strawberry.ID | None
    persona_id: strawberry.ID | None
    temperature: Temperature  # type: ignore[valid-type]
    scheduled_at: datetime | None
    hold_reason: str | None = strawberry.field(description="Why the post is HELD (crisis mode).")
    error: str | None = strawberry.field(description="Why publishing FAILED: '<kind>: <message>'.")
    row: strawberry.Private[Any]

    @classmethod
    def from_row(cls, row: Any, status: str | None = None) -> Post:
        return cls(
            id=strawberry.ID(ids.encode("Post", row["id"])),
            status=DomainPostStatus(status or row["status"]),
            version=row["version"],
            objective_id=gid("Objective", row["objective_id"]),
            persona_id=gid("Persona", row["persona_id"]),
            temperature=DomainTemperature(row["temperature"]),
            scheduled_at=row["scheduled_at"],
            hold_reason=row["hold_reason"],
            error=row["error"],
            row=row,
        )

    @strawberry.field(**secured(INHERITED))
    async def author(self, info: Info[Context, None]) -> User | None:
        return await load_user(info.context, self.row["author_id"])

    @strawberry.field(**secured(INHERITED))
    async def campaign(self, info: Info[Context, None]) -> Campaign | None:
        if not self.row["campaign_id"]:
            return None
        return await loader(info.context, "campaigns", _campaigns_by_id).load(self.row["campaign_id"])  # type: ignore[no-any-return]

    @strawberry.field(**secured(INHERITED), description="Engagements on every channel, as last measured.")
    async def engagements(self, info: Info[Context, None]) -> float | None:
        rate = await loader(info.context, "post_engagement", _engagement_by_post).load(self.row["id"])
        return rate.engagements if rate else None

    @strawberry.field(**secured(INHERITED), description=(
        "Engagements over impressions (reach where impressions are missing); null until both are measured."))
    async def engagement_rate(self, info: Info[Context, None]) -> float | None:
        rate = await loader(info.context, "post_engagement", _engagement_by_post).load(self.row["id"])
        return rate.value if rate else None

    @strawberry.field(**secured(INHERITED))
    def variants(self) -> list[PostVariant]:
        return [
            PostVariant(
                body=v["body"],
                media_urls=list(v.get("media_urls") or []),
                external_id=v.get("external_id"),
                external_url=v.get("external_url"),
                published_at=_when(v.get("published_at")),
                error=v.get("error"),
                channel_id=v["channel_id"],
            )
            for v in _json(self.row["variants"])
        ]

    @strawberry.field(**secured(INHERITED))
    def approvals(self) -> list[Approval]:
        return [
            Approval(
                step=a["step"],
                at=_when(a["at"]),  # type: ignore[arg-type]
                approved=a["approved"],
                comment=a.get("comment"),
                submission=a.get("submission", 0),
                policy_version=a.get("policy_version"),
                strategy_version=a.get("strategy_version"),
                on_behalf_of=gid("Tenant", a.get("on_behalf_of")),
                by_id=a["by"],
            )
            for a in _json(self.row["approvals"])
        ]

    @strawberry.field(**secured(INHERITED))
    async def history(self, info: Info[Context, None]) -> list[HistoryEvent]:
        return await loader(info.context, "aggregate_history", history_by_aggregate).load(self.row["id"])  # type: ignore[no-any-return]


async def history_by_aggregate(ctx: Context, keys: list[str]) -> list[list[HistoryEvent]]:
    scopes = sorted({ids.scope(k) for k in keys})
    rows = await ctx.db.fetch(
        "SELECT * FROM read.history WHERE tenant_id = ANY($1) AND aggregate_id = ANY($2) ORDER BY seq", scopes, keys
    )
    out: dict[str, list[HistoryEvent]] = {k: [] for k in keys}
    for row in rows:
        out[row["aggregate_id"]].append(HistoryEvent.from_row(row))
    return [out[k] for k in keys]


@inherit_permissions
@strawberry.type
class PostEdge:
    cursor: str
    node: Post


@inherit_permissions
@strawberry.type
class PostConnection:
    edges: list[PostEdge]
    page_info: PageInfo
    total_count: int


@strawberry.input
class PostFilter:
    status: list[PostStatus] | None = None  # type: ignore[valid-type]
    channel_id: strawberry.ID | None = None
    campaign_id: strawberry.ID | None = None
    from_: datetime | None = strawberry.field(default=None, name="from")
    to: datetime | None = None


@inherit_permissions
@strawberry.type
class CalendarEntry:
    post: Post
    channel: Channel
    at: datetime


@inherit_permissions
@strawberry.type
class CrisisSuggestion:
    """Incoming volume or negativity spiked against the tenant's baseline; the agency decides what to do."""

    at: datetime
    reason: str
    figures: JSON


@inherit_permissions
@strawberry.type
class Crisis:
    since: datetime
    reason: str
    held_posts: int
    activated_by_id: strawberry.Private[str | None]

    @strawberry.field(**secured(INHERITED))
    async def activated_by(self, info: Info[Context, None]) -> User | None:
        return await load_user(info.context, self.activated_by_id)
