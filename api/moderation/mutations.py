"""Mutations of the moderation inbox: policy, ingestion, assignment, decisions, overturns, erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from api import ids
from api.access import UserError, actor_of, inherit_permissions, require, secured
from api.commands import CommandResult, execute
from api.context import Context
from api.directory.mutations import TenantPayload, tenant_key_of, tenant_payload
from api.moderation.types import Decision, Interaction, InteractionKind, Sentiment
from api.publishing.mutations import input_id
from domain.app import Outcome
from domain.errors import InvalidInput
from domain.inbox import MAX_BATCH, Incoming
from domain.moderation import BusinessHours, Contact, PolicyTerms, Rule
from domain.roles import Permission


@strawberry.input
class ModerationRuleInput:
    name: str
    action: Decision  # type: ignore[valid-type]
    any_keywords: list[str] | None = strawberry.field(default_factory=list)
    channels: list[strawberry.ID] | None = strawberry.field(default_factory=list)
    kinds: list[InteractionKind] | None = strawberry.field(default_factory=list)  # type: ignore[valid-type]
    max_sentiment: Sentiment | None = None  # type: ignore[valid-type]
    min_spam_score: float | None = None


@strawberry.input
class BusinessHoursInput:
    days: list[int]
    start: str
    end: str


@strawberry.input
class EscalationContactInput:
    name: str
    email: str


@strawberry.input
class SetModerationPolicyInput:
    tenant_id: strawberry.ID
    rules: list[ModerationRuleInput]
    response_target_minutes: int
    crisis_response_target_minutes: int
    reason: str | None = None
    response_target_seconds: int | None = strawberry.field(
        default=None, description="Overrides responseTargetMinutes when finer targets are needed.")
    crisis_response_target_seconds: int | None = strawberry.field(
        default=None, description="Overrides crisisResponseTargetMinutes.")
    business_hours: BusinessHoursInput | None = strawberry.field(
        default=None, description="Outside a crisis, targets count working time only (tenant's time zone).")
    escalation_contacts: list[EscalationContactInput] | None = strawberry.field(default_factory=list)


@strawberry.input
class InteractionInput:
    channel_id: strawberry.ID
    kind: InteractionKind  # type: ignore[valid-type]
    external_id: str
    author: str
    text: str
    received_at: datetime
    in_reply_to_post_id: strawberry.ID | None = None


@strawberry.input
class IngestInteractionsInput:
    tenant_id: strawberry.ID
    items: list[InteractionInput]


@strawberry.input
class AssignInteractionInput:
    interaction_id: strawberry.ID
    assignee_id: strawberry.ID


@strawberry.input
class DecideInteractionInput:
    interaction_id: strawberry.ID
    decision: Decision  # type: ignore[valid-type]
    rationale: str | None = None
    reply_text: str | None = None
    escalate_to: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class OverturnDecisionInput:
    interaction_id: strawberry.ID
    decision: Decision  # type: ignore[valid-type]
    rationale: str
    reply_text: str | None = None
    escalate_to: str | None = None


@strawberry.input
class CorrectSentimentInput:
    interaction_id: strawberry.ID
    sentiment: Sentiment  # type: ignore[valid-type]


@strawberry.input
class EraseAuthorInput:
    tenant_id: strawberry.ID
    author: str
    reason: str


@inherit_permissions
@strawberry.type
class IngestPayload:
    accepted: int
    duplicates: int
    user_errors: list[UserError]
    position: str | None
    consistent: bool


@inherit_permissions
@strawberry.type
class InteractionPayload:
    interaction: Interaction | None
    user_errors: list[UserError]
    position: str | None
    consistent: bool


@inherit_permissions
@strawberry.type
class ErasePayload:
    erased_interactions: int
    user_errors: list[UserError]
    position: str | None
    consistent: bool


def _terms(data: SetModerationPolicyInput) -> PolicyTerms:
    rules = tuple(
        Rule(
            name=r.name, action=r.action.value, any_keywords=tuple(r.any_keywords or ()),
            channels=tuple(input_id(c, "Channel", f"rules.{i}.channels.{j}") or ""
                           for j, c in enumerate(r.channels or [])),
            kinds=tuple(k.value for k in r.kinds or ()),
            max_sentiment=r.max_sentiment.value if r.max_sentiment else None, min_spam_score=r.min_spam_score,
        )
        for i, r in enumerate(data.rules)
    )
    hours = data.business_hours
    return PolicyTerms(
        rules=rules,
        response_target_seconds=data.response_target_seconds or data.response_target_minutes * 60,
        crisis_response_target_seconds=data.crisis_response_target_seconds or data.crisis_response_target_minutes * 60,
        business_hours=BusinessHours(tuple(hours.days), hours.start, hours.end) if hours else None,
        contacts=tuple(Contact(c.name, c.email) for c in data.escalation_contacts or ()),
    )


def interaction_key(value: str) -> tuple[str, str]:
    """(raw interaction id, its tenant key) of an interactionId argument."""
    raw = ids.raw(value, "Interaction", "interactionId")
    return raw, ids.scope(raw)


async def interaction_payload(ctx: Context, result: CommandResult[Any], raw: str) -> InteractionPayload:
    interaction = None
    if not result.errors:
        row = await ctx.db.fetchrow(
            "SELECT * FROM read.interactions WHERE tenant_id = $1 AND id = $2", ids.scope(raw), raw
        )
        interaction = Interaction.from_row(row) if row else None
    return InteractionPayload(interaction=interaction, user_errors=result.errors, position=result.position_text,
                              consistent=result.consistent)


def _plain(value: Any) -> Any:
    return {k: getattr(v, "value", v) for k, v in vars(value).items() if k != "idempotency_key"}


@strawberry.type
class ModerationMutation:
    @strawberry.mutation(**secured(Permission.REVISE_STRATEGY))
    async def set_moderation_policy(self, info: Info[Context, None], input: SetModerationPolicyInput) -> TenantPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.REVISE_STRATEGY, "setModerationPolicy")
        domain = ctx.services.domain
        result = await execute(
            ctx, operation="setModerationPolicy", actor=actor_of(p, key, input.reason), input_data=None,
            command=lambda: domain.set_moderation_policy(key, _terms(input)),
        )
        return await tenant_payload(ctx, result, key)

    @strawberry.mutation(**secured(Permission.MODERATE))
    async def ingest_interactions(self, info: Info[Context, None], input: IngestInteractionsInput) -> IngestPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.MODERATE, "ingestInteractions")
        domain = ctx.services.domain

        def command() -> Outcome[tuple[int, int]]:
            if len(input.items) > MAX_BATCH:  # refused before decoding the ids of a too large batch
                raise InvalidInput(f"at most {MAX_BATCH} items in one call", "items")
            items = [
                Incoming(
                    channel_id=input_id(item.channel_id, "Channel", f"items.{i}.channelId") or "",
                    kind=item.kind.value, external_id=item.external_id, author=item.author, text=item.text,
                    received_at=item.received_at,
                    in_reply_to=input_id(item.in_reply_to_post_id, "Post", f"items.{i}.inReplyToPostId"),
                )
                for i, item in enumerate(input.items)
            ]
            return domain.ingest_interactions(key, items)

        result = await execute(ctx, operation="ingestInteractions", actor=actor_of(p, key), input_data=None,
                               command=command)
        accepted, duplicates = result.value or (0, 0)
        return IngestPayload(accepted=accepted, duplicates=duplicates, user_errors=result.errors,
                             position=result.position_text, consistent=result.consistent)

    @strawberry.mutation(**secured(Permission.MODERATE))
    async def assign_interaction(self, info: Info[Context, None], input: AssignInteractionInput) -> InteractionPayload:
        ctx = info.context
        raw, key = interaction_key(input.interaction_id)
        p = await require(ctx, key, Permission.MODERATE, "assignInteraction")
        assignee = ids.raw(input.assignee_id, "User", "assigneeId")
        staff = await ctx.db.fetchval(
            "SELECT 1 FROM auth.grants WHERE user_id = $1 AND active AND agency_id = $2 "
            "AND (tenant_key = $3 OR tenant_key IS NULL) AND role IN ('AGENCY_ADMIN', 'COMMUNITY_MANAGER')",
            assignee, p.agency_id, key,
        )
        domain = ctx.services.domain
        if staff is None:
            return InteractionPayload(interaction=None, position=None, consistent=True, user_errors=[UserError(
                code="BAD_USER_INPUT", field=["input", "assigneeId"],
                message="the assignee must be agency staff who moderate this tenant")])
        result = await execute(ctx, operation="assignInteraction", actor=actor_of(p, key), input_data=_plain(input),
                               command=lambda: domain.assign_interaction(raw, assignee))
        return await interaction_payload(ctx, result, raw)

    @strawberry.mutation(**secured(Permission.MODERATE))
    async def decide_interaction(self, info: Info[Context, None], input: DecideInteractionInput) -> InteractionPayload:
        ctx = info.context
        raw, key = interaction_key(input.interaction_id)
        p = await require(ctx, key, Permission.MODERATE, "decideInteraction")
        domain = ctx.services.domain
        result = await execute(
            ctx, operation="decideInteraction", actor=actor_of(p, key, input.rationale),
            idempotency_key=input.idempotency_key, input_data=_plain(input),
            command=lambda: domain.decide_interaction(raw, p.user_id, input.decision.value, input.rationale,
                                                      input.reply_text, input.escalate_to),
        )
        return await interaction_payload(ctx, result, raw)

    @strawberry.mutation(**secured(Permission.MODERATE))
    async def overturn_decision(self, info: Info[Context, None], input: OverturnDecisionInput) -> InteractionPayload:
        ctx = info.context
        raw, key = interaction_key(input.interaction_id)
        p = await require(ctx, key, Permission.MODERATE, "overturnDecision")
        domain = ctx.services.domain
        result = await execute(
            ctx, operation="overturnDecision", actor=actor_of(p, key, input.rationale), input_data=_plain(input),
            command=lambda: domain.overturn_decision(raw, p.user_id, input.decision.value, input.rationale,
                                                     input.reply_text, input.escalate_to),
        )
        return await interaction_payload(ctx, result, raw)

    @strawberry.mutation(**secured(Permission.MODERATE))
    async def correct_sentiment(self, info: Info[Context, None], input: CorrectSentimentInput) -> InteractionPayload:
        """A person corrects the sentiment the analysis found (kept apart: `sentimentCorrected`)."""
        ctx = info.context
        raw, key = interaction_key(input.interaction_id)
        p = await require(ctx, key, Permission.MODERATE, "correctSentiment")
        domain = ctx.services.domain
        result = await execute(ctx, operation="correctSentiment", actor=actor_of(p, key), input_data=_plain(input),
                               command=lambda: domain.correct_sentiment(raw, input.sentiment.value))
        return await interaction_payload(ctx, result, raw)

    @strawberry.mutation(**secured(Permission.MODERATE))
    async def erase_author(self, info: Info[Context, None], input: EraseAuthorInput) -> ErasePayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.MODERATE, "eraseAuthor")
        domain = ctx.services.domain
        ref = domain.personal.author_ref(key, input.author)
        rows = await ctx.db.fetch(
            "SELECT id FROM read.interactions WHERE tenant_id = $1 AND author_ref = $2 AND NOT erased", key, ref
        )
        result = await execute(
            ctx, operation="eraseAuthor", actor=actor_of(p, key, input.reason), input_data=None,
            command=lambda: domain.erase_author(key, input.author, [r["id"] for r in rows]),
        )
        return ErasePayload(erased_interactions=result.value or 0, user_errors=result.errors,
                            position=result.position_text, consistent=result.consistent)
