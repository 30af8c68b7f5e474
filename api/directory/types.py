"""GraphQL types of agencies, tenants, channels, people and memberships."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from api import ids
from api.access import INHERITED, inherit_permissions, secured
from api.context import Context
from api.inputs import instant
from api.metrics.enums import Granularity
from api.pagination import PageInfo
from domain.channel import ChannelHealth as DomainChannelHealth
from domain.channel import Platform as DomainPlatform
from domain.roles import Permission
from domain.roles import Role as DomainRole
from domain.tenant import TenantKind as DomainTenantKind
from domain.tenant import TenantStatus as DomainTenantStatus

if TYPE_CHECKING:
    from api.audit.asof import TenantSnapshot
    from api.history.types import HistoryConnection, HistoryFilter, HistoryVerification
    from api.metrics.queries import KpiProgress, MetricPoint
    from api.moderation.types import InteractionConnection, ModerationFilter, ModerationPolicy, ModerationStats
    from api.publishing.types import (
        CalendarEntry,
        CampaignConnection,
        Crisis,
        CrisisSuggestion,
        PostConnection,
        PostFilter,
        Strategy,
    )
    from api.reports.types import ReportConnection

_PUBLISHING = "api.publishing.types"
_MODERATION = "api.moderation.types"

Role = strawberry.enum(DomainRole, name="Role")
TenantKind = strawberry.enum(DomainTenantKind, name="TenantKind")
TenantStatus = strawberry.enum(DomainTenantStatus, name="TenantStatus")
Platform = strawberry.enum(DomainPlatform, name="Platform")
ChannelHealth = strawberry.enum(DomainChannelHealth, name="ChannelHealth")


@inherit_permissions
@strawberry.interface
class Node:
    id: strawberry.ID


@inherit_permissions
@strawberry.type
class Agency(Node):
    id: strawberry.ID
    name: str


@inherit_permissions
@strawberry.type
class ApprovalPolicy:
    internal_approvals: int
    client_approval: bool
    expires_after_hours: int | None


@inherit_permissions
@strawberry.type
class Channel(Node):
    id: strawberry.ID
    platform: Platform  # type: ignore[valid-type]
    handle: str
    mission: str | None
    health: ChannelHealth  # type: ignore[valid-type]

    @classmethod
    def from_row(cls, row: Any) -> Channel:
        return cls(
            id=strawberry.ID(ids.encode("Channel", row["id"])),
            platform=DomainPlatform(row["platform"]),
            handle=row["handle"],
            mission=row["mission"],
            health=DomainChannelHealth(row["health"]),
        )


@inherit_permissions
@strawberry.type
class User(Node):
    id: strawberry.ID
    email: str
    display_name: str
    raw_id: strawberry.Private[str]

    @strawberry.field(**secured(INHERITED))
    async def memberships(self, info: Info[Context, None]) -> list[Membership]:
        rows = await info.context.db.fetch(
            "SELECT * FROM read.memberships WHERE user_id = $1 AND active ORDER BY granted_at", self.raw_id
        )
        return [Membership.from_row(r) for r in rows]


@inherit_permissions
@strawberry.type
class Membership:
    role: Role  # type: ignore[valid-type]
    row: strawberry.Private[Any]

    @classmethod
    def from_row(cls, row: Any) -> Membership:
        return cls(role=DomainRole(row["role"]), row=row)

    @strawberry.field(**secured(INHERITED))
    def user(self) -> User:
        r = self.row
        return User(
            id=strawberry.ID(ids.encode("User", r["user_id"])),
            email=r["user_email"],
            display_name=r["user_display_name"],
            raw_id=r["user_id"],
        )

    @strawberry.field(**secured(INHERITED))
    async def tenant(self, info: Info[Context, None]) -> Tenant | None:
        if self.row["agency_wide"]:
            return None
        return await load_tenant(info.context, self.row["tenant_id"])


@inherit_permissions
@strawberry.type
class Tenant(Node):
    id: strawberry.ID
    name: str
    kind: TenantKind  # type: ignore[valid-type]
    timezone: str
    locale: str
    status: TenantStatus  # type: ignore[valid-type]
    approval_policy: ApprovalPolicy
    key: strawberry.Private[str]
    created_at: strawberry.Private[datetime]
    row: strawberry.Private[Any]

    @classmethod
    def from_row(cls, row: Any) -> Tenant:
        return cls(
            id=strawberry.ID(ids.encode("Tenant", row["tenant_id"])),
            key=row["tenant_id"],
            name=row["name"],
            kind=DomainTenantKind(row["kind"]),
            timezone=row["timezone"],
            locale=row["locale"],
            status=DomainTenantStatus(row["status"]),
            approval_policy=ApprovalPolicy(
                internal_approvals=row["approval_internal"],
                client_approval=row["approval_client"],
                expires_after_hours=row["approval_expires_hours"],
            ),
            created_at=row["created_at"],
            row=row,
        )

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def crisis(self, info: Info[Context, None]) -> Annotated[Crisis, strawberry.lazy(_PUBLISHING)] | None:
        from api.publishing import queries

        return await queries.crisis(info.context, self.key, self.row)

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    def crisis_suggestion(self) -> Annotated[CrisisSuggestion, strawberry.lazy(_PUBLISHING)] | None:
        """The latest spike the workers detected, until crisis mode is switched on or off."""
        from api.publishing.types import CrisisSuggestion

        if self.row["crisis_suggested_at"] is None:
            return None
        data = self.row["crisis_suggestion"]
        data = json.loads(data) if isinstance(data, str) else data
        return CrisisSuggestion(at=self.row["crisis_suggested_at"], reason=data["reason"], figures=data["figures"])

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def strategy(self, info: Info[Context, None]) -> Annotated[Strategy, strawberry.lazy(_PUBLISHING)] | None:
        from api.publishing import queries

        return await queries.strategy(info.context, self.key)

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def strategy_at(
        self, info: Info[Context, None], at: datetime
    ) -> Annotated[Strategy, strawberry.lazy(_PUBLISHING)] | None:
        from api.publishing import queries

        return await queries.strategy(info.context, self.key, instant(at, self.timezone))

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def strategy_versions(
        self, info: Info[Context, None]
    ) -> list[Annotated[Strategy, strawberry.lazy(_PUBLISHING)]]:
        from api.publishing import queries

        return await queries.strategy_versions(info.context, self.key)

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def campaigns(
        self, info: Info[Context, None], first: int | None = 20, after: str | None = None
    ) -> Annotated[CampaignConnection, strawberry.lazy(_PUBLISHING)]:
        from api.publishing import queries

        return await queries.campaigns(info.context, self.key, first, after)

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def posts(
        self,
        info: Info[Context, None],
        first: int | None = 20,
        after: str | None = None,
        filter: Annotated[PostFilter, strawberry.lazy(_PUBLISHING)] | None = None,
    ) -> Annotated[PostConnection, strawberry.lazy(_PUBLISHING)]:
        from api.publishing import queries

        return await queries.posts(info.context, self.key, first, after, filter, self.timezone)

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def calendar(
        self,
        info: Info[Context, None],
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
    ) -> list[Annotated[CalendarEntry, strawberry.lazy(_PUBLISHING)]]:
        from api.publishing import queries

        return await queries.calendar(info.context, self.key, instant(from_, self.timezone), instant(to, self.timezone))

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def moderation_policy(
        self, info: Info[Context, None]
    ) -> Annotated[ModerationPolicy, strawberry.lazy(_MODERATION)]:
        from api.moderation import queries

        return await queries.moderation_policy(info.context, self.key)

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def moderation_queue(
        self,
        info: Info[Context, None],
        first: int | None = 20,
        after: str | None = None,
        filter: Annotated[ModerationFilter, strawberry.lazy(_MODERATION)] | None = None,
    ) -> Annotated[InteractionConnection, strawberry.lazy(_MODERATION)]:
        from api.moderation import queries

        return await queries.moderation_queue(info.context, self.key, first, after, filter)

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def moderation_stats(
        self,
        info: Info[Context, None],
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
    ) -> Annotated[ModerationStats, strawberry.lazy(_MODERATION)]:
        from api.moderation import queries

        return await queries.moderation_stats(
            info.context, self.key, instant(from_, self.timezone), instant(to, self.timezone)
        )

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def kpis(
        self, info: Info[Context, None], at: datetime | None = None
    ) -> list[Annotated[KpiProgress, strawberry.lazy("api.metrics.queries")]]:
        from api.metrics import queries

        return await queries.kpis(info.context, self.key, at and instant(at, self.timezone))

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def metric_series(
        self,
        info: Info[Context, None],
        metric: str,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        channel_id: strawberry.ID | None = None,
        granularity: Granularity = Granularity.DAY,
    ) -> list[Annotated[MetricPoint, strawberry.lazy("api.metrics.queries")]]:
        from api.metrics import queries

        return await queries.metric_series(
            info.context, self.key, self.timezone, metric, channel_id, from_, to, granularity
        )

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def reports(
        self, info: Info[Context, None], first: int | None = 20, after: str | None = None
    ) -> Annotated[ReportConnection, strawberry.lazy("api.reports.types")]:
        from api.reports import queries

        return await queries.reports(info.context, self.key, first, after)

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def channels(self, info: Info[Context, None]) -> list[Channel]:
        return await loader(info.context, "channels", _channels_by_tenant).load(self.key)

    @strawberry.field(**secured(Permission.SEE, tenant_field=True))
    async def members(self, info: Info[Context, None]) -> list[Membership]:
        return await loader(info.context, "members", _members_by_tenant).load(self.key)

    @strawberry.field(**secured(Permission.AUDIT, tenant_field=True))
    async def history(
        self,
        info: Info[Context, None],
        first: int | None = 50,
        after: str | None = None,
        filter: Annotated[HistoryFilter, strawberry.lazy("api.history.types")] | None = None,
    ) -> Annotated[HistoryConnection, strawberry.lazy("api.history.types")]:
        from api.history.queries import tenant_history

        return await tenant_history(info, self.key, first, after, filter, self.timezone)

    @strawberry.field(**secured(Permission.AUDIT, tenant_field=True))
    async def as_of(
        self, info: Info[Context, None], at: datetime
    ) -> Annotated[TenantSnapshot, strawberry.lazy("api.audit.asof")]:
        """The tenant as it was at `at` (a wall-clock time without offset is the tenant's), from its events."""
        from api.audit.asof import tenant_as_of

        return await tenant_as_of(info.context, self.key, self.timezone, at)

    @strawberry.field(**secured(Permission.AUDIT, tenant_field=True))
    async def verify_history(
        self, info: Info[Context, None]
    ) -> Annotated[HistoryVerification, strawberry.lazy("api.history.types")]:
        from api.history.queries import verify_history

        return await verify_history(info, self.key)


@inherit_permissions
@strawberry.type
class TenantEdge:
    cursor: str
    node: Tenant


@inherit_permissions
@strawberry.type
class TenantConnection:
    edges: list[TenantEdge]
    page_info: PageInfo
    total_count: int


@inherit_permissions
@strawberry.type
class Session:
    access_token: str
    expires_at: datetime
    user: User


class SharedLoader(DataLoader[Any, Any]):
    """A DataLoader whose loads survive one of their awaiters being cancelled.

    A load's future is cached and shared by every field that asks for the same key; when a sibling field fails,
    the executor cancels the fields still running, and cancelling one awaiter of a bare future cancels it for all:
    the others then raised CancelledError, which escaped the executor as a 500."""

    def load(self, key: Any) -> Awaitable[Any]:
        return asyncio.shield(super().load(key))


def loader(ctx: Context, name: str, batch: Any) -> DataLoader[Any, Any]:
    """A per-request DataLoader, created on first use."""
    if name not in ctx.loaders:

        async def load(keys: list[Any]) -> list[Any]:
            return await batch(ctx, keys)

        ctx.loaders[name] = SharedLoader(load_fn=load)
    return ctx.loaders[name]  # type: ignore[no-any-return]


async def _channels_by_tenant(ctx: Context, keys: list[str]) -> list[list[Channel]]:
    rows = await ctx.db.fetch(
        "SELECT * FROM read.channels WHERE tenant_id = ANY($1) AND connected ORDER BY created_at, id", keys
    )
    out: dict[str, list[Channel]] = {k: [] for k in keys}
    for row in rows:
        out[row["tenant_id"]].append(Channel.from_row(row))
    return [out[k] for k in keys]


async def _members_by_tenant(ctx: Context, keys: list[str]) -> list[list[Membership]]:
    rows = await ctx.db.fetch(
        "SELECT * FROM read.memberships WHERE tenant_id = ANY($1) AND active ORDER BY granted_at, id", keys
    )
    out: dict[str, list[Membership]] = {k: [] for k in keys}
    for row in rows:
        out[row["tenant_id"]].append(Membership.from_row(row))
    return [out[k] for k in keys]


async def _tenants_by_key(ctx: Context, keys: list[str]) -> list[Tenant | None]:
    principal = ctx.require_principal()
    if ctx.services.config.resolver_filters:
        rows = await ctx.db.fetch(
            "SELECT * FROM read.tenants WHERE tenant_id = ANY($1) AND agency_id = $2", keys, principal.agency_id
        )
    else:
        rows = await ctx.db.fetch("SELECT * FROM read.tenants WHERE tenant_id = ANY($1)", keys)
    found = {r["tenant_id"]: Tenant.from_row(r) for r in rows}
    return [found.get(k) for k in keys]


async def load_tenant(ctx: Context, key: str) -> Tenant | None:
    """The tenant if the caller may see it (resolver check and RLS both apply), else None."""
    principal = ctx.require_principal()
    filters = ctx.services.config.resolver_filters
    if filters and key not in principal.tenant_keys and not principal.agency_wide:
        return None
    return await loader(ctx, "tenants", _tenants_by_key).load(key)  # type: ignore[no-any-return]
