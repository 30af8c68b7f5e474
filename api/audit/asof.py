"""`Tenant.asOf(at)`: the tenant as it was at an instant, rebuilt from its events up to then."""

from __future__ import annotations

from datetime import datetime

import strawberry

from api.access import inherit_permissions
from api.context import Context
from api.directory.types import ApprovalPolicy, TenantStatus
from api.moderation.types import Interaction, ModerationPolicy
from api.publishing.types import Crisis, Post, Strategy
from domain.moderation import DEFAULT_TERMS
from domain.scheduling import resolve
from domain.tenant import TenantStatus as DomainTenantStatus
from projections.base import Envelope
from projections.timetravel import EVENTS_UNTIL, open_personal, replay


@inherit_permissions
@strawberry.type
class TenantSnapshot:
    at: datetime
    event_count: int
    name: str
    status: TenantStatus  # type: ignore[valid-type]
    crisis: Crisis | None
    approval_policy: ApprovalPolicy
    moderation_policy: ModerationPolicy
    strategy: Strategy | None
    posts: list[Post]
    interactions: list[Interaction]


async def tenant_as_of(ctx: Context, key: str, timezone: str, at: datetime) -> TenantSnapshot:
    instant = resolve(at, timezone)  # a wall-clock time is the tenant's, as for scheduling
    rows = await ctx.db.fetch(EVENTS_UNTIL, key, instant)
    state = replay([Envelope.from_row(r) for r in rows])
    if state.sealed:
        pairs = [(ref, sealed) for ref, author, text in state.sealed.values() for sealed in (author, text)]
        opened = await ctx.services.call(ctx.services.domain.personal.open, key, pairs)
        open_personal(state, {iid: (opened[2 * n], opened[2 * n + 1]) for n, iid in enumerate(state.sealed)})
    tenant = state.tenant
    policy = tenant.get("approval_policy") or {}
    crisis = tenant.get("crisis")
    held = sum(1 for p in state.posts if p["status"] == "HELD")
    terms = state.moderation_policy
    return TenantSnapshot(
        at=instant,
        event_count=state.event_count,
        name=tenant.get("name", ""),
        status=DomainTenantStatus(tenant.get("status", "ACTIVE")),
        crisis=Crisis(since=crisis["since"], reason=crisis["reason"], held_posts=held, activated_by_id=crisis["by"])
        if crisis else None,
        approval_policy=ApprovalPolicy(
            internal_approvals=policy.get("internal_approvals", 1),
            client_approval=policy.get("client_approval", False),
            expires_after_hours=policy.get("expires_after_hours"),
        ),
        moderation_policy=ModerationPolicy.from_terms(terms["version"], terms["terms"], terms["effective_from"])
        if terms else ModerationPolicy.from_terms(0, DEFAULT_TERMS.as_dict(), None),
        strategy=Strategy.from_row(state.strategy) if state.strategy else None,
        posts=[Post.from_row(p) for p in state.posts],
        interactions=[Interaction.from_row(i) for i in state.interactions],
    )
