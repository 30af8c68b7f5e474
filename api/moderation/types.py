"""GraphQL types of the moderation inbox: policy, interactions, decisions, statistics."""

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
from api.publishing.types import Post, history_by_aggregate, load_channel, load_user
from domain.interaction import ModerationStatus as DomainModerationStatus
from domain.moderation import Decision as DomainDecision
from domain.moderation import InteractionKind as DomainInteractionKind
from domain.moderation import Sentiment as DomainSentiment

InteractionKind = strawberry.enum(DomainInteractionKind, name="InteractionKind")
ModerationStatus = strawberry.enum(DomainModerationStatus, name="ModerationStatus")
Decision = strawberry.enum(DomainDecision, name="Decision")
Sentiment = strawberry.enum(DomainSentiment, name="Sentiment")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@inherit_permissions
@strawberry.type
class ModerationRule:
    id: strawberry.ID
    name: str
    any_keywords: list[str]
    channels: list[strawberry.ID]
    kinds: list[InteractionKind]  # type: ignore[valid-type]
    max_sentiment: Sentiment | None  # type: ignore[valid-type]
    min_spam_score: float | None
    action: Decision  # type: ignore[valid-type]


@inherit_permissions
@strawberry.type
class BusinessHours:
    days: list[int] = strawberry.field(description="0 = Monday ... 6 = Sunday.")
    start: str
    end: str


@inherit_permissions
@strawberry.type
class EscalationContact:
    name: str
    email: str


@inherit_permissions
@strawberry.type
class ModerationPolicy:
    version: int
    rules: list[ModerationRule]
    response_target_minutes: int
    crisis_response_target_minutes: int
    response_target_seconds: int
    crisis_response_target_seconds: int
    business_hours: BusinessHours | None
    escalation_contacts: list[EscalationContact]
    effective_from: datetime | None

    @classmethod
    def from_terms(cls, version: int, terms: dict[str, Any], effective_from: datetime | None) -> ModerationPolicy:
        hours = terms.get("business_hours")
        return cls(
            version=version,
            rules=[
                ModerationRule(
                    id=strawberry.ID(ids.encode("ModerationRule", r["id"])),
                    name=r["name"],
                    any_keywords=list(r["any_keywords"]),
                    channels=[strawberry.ID(ids.encode("Channel", c)) for c in r["channels"]],
                    kinds=[DomainInteractionKind(k) for k in r["kinds"]],
                    max_sentiment=DomainSentiment(r["max_sentiment"]) if r["max_sentiment"] else None,
                    min_spam_score=r["min_spam_score"],
                    action=DomainDecision(r["action"]),
                )
                for r in terms["rules"]
            ],
            response_target_minutes=-(-terms["response_target_seconds"] // 60),
            crisis_response_target_minutes=-(-terms["crisis_response_target_seconds"] // 60),
            response_target_seconds=terms["response_target_seconds"],
            crisis_response_target_seconds=terms["crisis_response_target_seconds"],
            business_hours=BusinessHours(days=list(hours["days"]), start=hours["start"], end=hours["end"])
            if hours else None,
            escalation_contacts=[EscalationContact(name=c["name"], email=c["email"])
                                 for c in terms.get("contacts", [])],
            effective_from=effective_from,
        )


@inherit_permissions
@strawberry.type
class ModerationDecision:
    decision: Decision  # type: ignore[valid-type]
    decided_at: datetime
    rule_id: strawberry.ID | None
    rationale: str | None
    reply_text: str | None
    escalate_to: str | None
    policy_version: int
    strategy_version: int | None
    overturned: bool
    actor: str = strawberry.field(description="The user id, or 'rule:<id>@<policy version>' when a rule decided.")
    on_behalf_of: strawberry.ID | None = strawberry.field(description="The tenant agency staff acted for.")
    by_id: strawberry.Private[str | None]

    @strawberry.field(**secured(INHERITED))
    async def by(self, info: Info[Context, None]) -> User | None:
        return await load_user(info.context, self.by_id)

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> ModerationDecision:
        rule = d.get("rule_id")
        return cls(
            decision=DomainDecision(d["decision"]),
            decided_at=datetime.fromisoformat(d["at"]),
            rule_id=strawberry.ID(ids.encode("ModerationRule", rule)) if rule else None,
            rationale=d.get("rationale"),
            reply_text=d.get("reply_text"),
            escalate_to=d.get("escalate_to"),
            policy_version=d["policy_version"],
            strategy_version=d.get("strategy_version"),
            overturned=d["overturned"],
            actor=d.get("actor") or (f"rule:{rule}@{d['policy_version']}" if rule else str(d.get("by"))),
            on_behalf_of=strawberry.ID(ids.encode("Tenant", d["on_behalf_of"])) if d.get("on_behalf_of") else None,
            by_id=d.get("by"),
        )


@inherit_permissions
@strawberry.type
class Interaction(Node):
    id: strawberry.ID
    kind: InteractionKind  # type: ignore[valid-type]
    external_id: str
    author: str = strawberry.field(description='"[erased]" once the author\'s data has been erased.')
    text: str
    received_at: datetime
    status: ModerationStatus  # type: ignore[valid-type]
    sentiment: Sentiment | None  # type: ignore[valid-type]
    sentiment_corrected: bool
    language: str | None
    spam_score: float | None
    matched_rule_ids: list[strawberry.ID]
    due_by: datetime | None
    breached: bool
    row: strawberry.Private[Any]

    @classmethod
    def from_row(cls, row: Any) -> Interaction:
        return cls(
            id=strawberry.ID(ids.encode("Interaction", row["id"])),
            kind=DomainInteractionKind(row["kind"]),
            external_id=row["external_id"],
            author=row["author"],
            text=row["text"],
            received_at=row["received_at"],
            status=DomainModerationStatus(row["status"]),
            sentiment=DomainSentiment(row["sentiment"]) if row["sentiment"] else None,
            sentiment_corrected=row["sentiment_corrected"],
            language=row["language"],
            spam_score=row["spam_score"],
            matched_rule_ids=[strawberry.ID(ids.encode("ModerationRule", r)) for r in _json(row["matched_rule_ids"])],
            due_by=row["due_by"],
            breached=row["breached"],
            row=row,
        )

    @strawberry.field(**secured(INHERITED))
    async def channel(self, info: Info[Context, None]) -> Channel:
        channel = await load_channel(info.context, self.row["channel_id"])
        assert channel is not None, "an interaction's channel is a channel of the same tenant"
        return channel

    @strawberry.field(**secured(INHERITED))
    async def in_reply_to(self, info: Info[Context, None]) -> Post | None:
        if not self.row["in_reply_to"]:
            return None
        return await loader(info.context, "posts_by_id", _posts_by_id).load(self.row["in_reply_to"])  # type: ignore[no-any-return]

    @strawberry.field(**secured(INHERITED))
    async def assignee(self, info: Info[Context, None]) -> User | None:
        return await load_user(info.context, self.row["assignee_id"])

    @strawberry.field(**secured(INHERITED))
    def decisions(self) -> list[ModerationDecision]:
        return [ModerationDecision.from_data(d) for d in _json(self.row["decisions"])]

    @strawberry.field(**secured(INHERITED))
    async def history(self, info: Info[Context, None]) -> list[HistoryEvent]:
        return await loader(info.context, "aggregate_history", history_by_aggregate).load(self.row["id"])  # type: ignore[no-any-return]


async def _posts_by_id(ctx: Context, keys: list[str]) -> list[Post | None]:
    rows = await ctx.db.fetch("SELECT * FROM read.posts WHERE tenant_id = ANY($2) AND id = ANY($1)", keys,
                              sorted({ids.scope(k) for k in keys}))
    found = {r["id"]: Post.from_row(r) for r in rows}
    return [found.get(k) for k in keys]


@inherit_permissions
@strawberry.type
class InteractionEdge:
    cursor: str
    node: Interaction


@inherit_permissions
@strawberry.type
class InteractionConnection:
    edges: list[InteractionEdge]
    page_info: PageInfo
    total_count: int


@strawberry.input
class ModerationFilter:
    status: list[ModerationStatus] | None = None  # type: ignore[valid-type]
    channel_id: strawberry.ID | None = None
    kind: list[InteractionKind] | None = None  # type: ignore[valid-type]
    assignee_id: strawberry.ID | None = None
    overdue: bool | None = None


@inherit_permissions
@strawberry.type
class ModerationStats:
    received: int
    decided: int
    by_decision: JSON
    median_response_minutes: float | None
    overdue: int
