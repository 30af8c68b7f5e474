"""A tenant as it was: its events up to an instant, folded in memory by the read models' own handlers.

The publishing and moderation projections change rows in memory before they write them, so replaying a tenant's
events through the same handlers with nothing written gives, by construction, the rows the read models held at
that instant. The cost is that tenant's events only (one primary-key range of the event store).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from projections.base import Envelope
from projections.moderation import Moderation
from projections.moderation import _Batch as _ModerationBatch
from projections.publishing import Publishing
from projections.publishing import _Batch as _PublishingBatch

# Events up to an instant of one tenant (the app role reads them through the guarded function).
EVENTS_UNTIL = """
SELECT e.* FROM parvis.scope_events($1) e
WHERE e.notification_id <= (SELECT coalesce(max(position), 0) FROM read.history
                            WHERE tenant_id = $1 AND occurred_at <= $2)
ORDER BY e.notification_id
"""


class _Unopened:
    """Personal data stays sealed in the replay; the caller opens what the author's key still allows."""

    def open(self, key: bytes | None, sealed: str) -> None:
        return None


@dataclass
class TenantState:
    """What `asOf` shows: the tenant's own fields and its read-model rows at that instant."""

    event_count: int = 0
    tenant: dict[str, Any] = field(default_factory=dict)
    strategy: dict[str, Any] | None = None
    moderation_policy: dict[str, Any] | None = None
    posts: list[dict[str, Any]] = field(default_factory=list)
    interactions: list[dict[str, Any]] = field(default_factory=list)
    # interaction id -> (author_ref, sealed author, sealed text), for the caller to open
    sealed: dict[str, tuple[str, str, str]] = field(default_factory=dict)


def replay(envelopes: Sequence[Envelope]) -> TenantState:
    """Fold one tenant's events (in order) into the rows its read models held after the last of them."""
    publishing, moderation = Publishing(), Moderation(_Unopened())  # type: ignore[arg-type]
    posts = _PublishingBatch(None, {})  # type: ignore[arg-type]
    inbox = _ModerationBatch(None, {}, _Unopened())  # type: ignore[arg-type]
    state = TenantState(event_count=len(envelopes))
    for env in envelopes:
        if env.aggregate_type == "Tenant":
            _tenant(state.tenant, env)
        if env.aggregate_type == "Interaction" and env.event_type == "Received":
            e = env.e
            state.sealed[env.originator_id] = (e.author_ref, e.author, e.text)
        for projection, work in ((publishing, posts), (moderation, inbox)):
            handler = getattr(projection, f"_{env.aggregate_type}_{env.event_type}", None)
            if handler is not None:
                handler(work, env)
    if posts.strategies:
        last = posts.strategies[-1]
        state.strategy = dict(zip(("tenant_id", "agency_id", "version", "effective_from", "revised_by", "reason",
                                   "positioning", "objectives", "personas", "editorial_line", "position"), last,
                                  strict=True))
    if inbox.policies:
        _, _, version, at, *_, terms = inbox.policies[-1]
        state.moderation_policy = {"version": version, "effective_from": at, "terms": json.loads(terms)}
    state.posts = sorted(posts.posts.values(), key=lambda p: (p["created_at"], p["id"]), reverse=True)
    state.interactions = sorted(inbox.rows.values(), key=lambda i: (i["received_at"], i["id"]), reverse=True)
    return state


def _tenant(tenant: dict[str, Any], env: Envelope) -> None:
    e = env.e
    kind = env.event_type
    if kind == "Created":
        tenant.update(name=e.name, timezone=e.timezone, status="ACTIVE", crisis=None,
                      approval_policy={"internal_approvals": 1, "client_approval": False, "expires_after_hours": None})
    elif kind == "Renamed":
        tenant["name"] = e.name
    elif kind == "TimezoneChanged":
        tenant["timezone"] = e.timezone
    elif kind == "StatusChanged":
        tenant["status"] = e.status
    elif kind == "ApprovalPolicySet":
        tenant["approval_policy"] = dict(e.policy)
    elif kind == "CrisisActivated":
        tenant["crisis"] = {"since": env.at, "reason": e.reason, "by": env.meta.get("actor")}
    elif kind == "CrisisDeactivated":
        tenant["crisis"] = None


def open_personal(state: TenantState, opened: Mapping[str, tuple[str | None, str | None]]) -> None:
    """Put back the authors and texts their keys still open (`opened`: id -> (author, text))."""
    for row in state.interactions:
        author, text = opened.get(row["id"], (None, None))
        if not row["erased"] and author is not None and text is not None:
            row["author"], row["text"] = author, text

