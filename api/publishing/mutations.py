"""Mutations of strategy and publishing: strategy revisions, campaigns, the post lifecycle, crisis mode."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from api import ids
from api.access import UserError, actor_of, inherit_permissions, record_denial, require, secured
from api.commands import CommandResult, execute
from api.context import Context
from api.directory.mutations import TenantPayload, tenant_key_of, tenant_payload
from api.directory.types import load_tenant
from api.errors import ApiError, Forbidden
from api.inputs import instant
from api.publishing.types import Campaign, Intent, Post, Strategy, Temperature
from domain.app import Outcome
from domain.errors import InvalidInput
from domain.post import CLIENT, INTERNAL, Variant
from domain.post import Temperature as DomainTemperature
from domain.roles import Permission
from domain.strategy import EditorialLine, Objective, Persona


# ---------------------------------------------------------------- inputs
@strawberry.input
class ObjectiveInput:
    title: str
    intent: Intent  # type: ignore[valid-type]
    metric: str
    target: float
    channel_id: strawberry.ID | None = None
    baseline: float | None = None
    deadline: datetime | None = None


@strawberry.input
class PersonaInput:
    name: str
    description: str | None = None
    channel_ids: list[strawberry.ID] | None = strawberry.field(default_factory=list)


@strawberry.input
class ChannelFrequencyInput:
    channel_id: strawberry.ID
    posts_per_week: float


@strawberry.input
class EditorialLineInput:
    tone: str | None = None
    themes: list[str] | None = strawberry.field(default_factory=list)
    hot_share: float | None = None
    posts_per_week: list[ChannelFrequencyInput] | None = strawberry.field(default_factory=list)


@strawberry.input
class ReviseStrategyInput:
    tenant_id: strawberry.ID
    objectives: list[ObjectiveInput]
    personas: list[PersonaInput]
    editorial_line: EditorialLineInput
    reason: str
    positioning: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class CreateCampaignInput:
    tenant_id: strawberry.ID
    name: str
    hashtag: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    objective_ids: list[strawberry.ID] | None = strawberry.field(default_factory=list)
    budget: float | None = None
    idempotency_key: str | None = None


@strawberry.input
class VariantInput:
    channel_id: strawberry.ID
    body: str
    media_urls: list[str] | None = strawberry.field(default_factory=list)


@strawberry.input
class DraftPostInput:
    tenant_id: strawberry.ID
    variants: list[VariantInput]
    campaign_id: strawberry.ID | None = None
    objective_id: strawberry.ID | None = None
    persona_id: strawberry.ID | None = None
    temperature: Temperature = DomainTemperature.COLD  # type: ignore[valid-type]
    idempotency_key: str | None = None


@strawberry.input
class EditPostInput:
    post_id: strawberry.ID
    variants: list[VariantInput]
    expected_version: int | None = None
    reason: str | None = None


@strawberry.input
class PostActionInput:
    post_id: strawberry.ID
    reason: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class ReviewPostInput:
    post_id: strawberry.ID
    comment: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class SchedulePostInput:
    post_id: strawberry.ID
    at: datetime = strawberry.field(
        description="An instant with an offset, or a local time of the tenant's time zone (see the README on "
        "daylight-saving days)."
    )
    idempotency_key: str | None = None


@strawberry.input
class ActivateCrisisInput:
    tenant_id: strawberry.ID
    reason: str


@strawberry.input
class TenantActionInput:
    tenant_id: strawberry.ID
    reason: str | None = None


# ---------------------------------------------------------------- payloads
@inherit_permissions
@strawberry.type
class StrategyPayload:
    strategy: Strategy | None
    user_errors: list[UserError]
    position: str | None
    consistent: bool


@inherit_permissions
@strawberry.type
class CampaignPayload:
    campaign: Campaign | None
    user_errors: list[UserError]
    position: str | None
    consistent: bool


@inherit_permissions
@strawberry.type
class PostPayload:
    post: Post | None
    user_errors: list[UserError]
    position: str | None
    consistent: bool


# ---------------------------------------------------------------- helpers
def input_id(value: str | None, type_name: str, field: str) -> str | None:
    """The raw id behind a global id of an input; a malformed one is a user error naming the field."""
    if value is None:
        return None
    try:
        return ids.decode(value, type_name, field=field)[1]
    except ApiError:
        raise InvalidInput(f"{field} is not a {type_name} id", field) from None


def _variants(items: list[VariantInput]) -> list[Variant]:
    return [
        Variant(
            channel_id=input_id(v.channel_id, "Channel", f"variants.{i}.channelId") or "",
            body=v.body,
            media_urls=tuple(v.media_urls or ()),
        )
        for i, v in enumerate(items)
    ]


def _plain(value: Any) -> Any:
    """Input objects as JSON-ready data (for idempotency fingerprints)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "__strawberry_definition__"):
        return {k: _plain(v) for k, v in vars(value).items() if k != "idempotency_key"}
    return value


async def _timezone(ctx: Context, key: str) -> str:
    """The tenant's time zone: a deadline or a campaign date without an offset is a wall-clock time there (as for
    scheduling), so that every stored instant compares with the others."""
    tenant = await load_tenant(ctx, key)
    return tenant.timezone if tenant else "UTC"


def post_key(post_id: str) -> tuple[str, str]:
    """(raw post id, its tenant key) of a postId argument."""
    raw = ids.raw(post_id, "Post", "postId")
    return raw, ids.scope(raw)


async def post_payload(ctx: Context, result: CommandResult[Any], post_id: str | None) -> PostPayload:
    post = None
    if post_id and not result.errors:
        row = await ctx.db.fetchrow(
            "SELECT * FROM read.posts WHERE tenant_id = $1 AND id = $2", ids.scope(post_id), post_id
        )
        post = Post.from_row(row) if row else None
    return PostPayload(post=post, user_errors=result.errors, position=result.position_text,
                       consistent=result.consistent)


async def _post_command(
    ctx: Context,
    post_id: str,
    operation: str,
    permission: Permission,
    command: Callable[[str], Outcome[Any]],
    *,
    reason: str | None = None,
    idempotency_key: str | None = None,
    input_data: Any = None,
) -> PostPayload:
    raw, key = post_key(post_id)
    p = await require(ctx, key, permission, operation)
    result = await execute(
        ctx,
        operation=operation,
        actor=actor_of(p, key, reason),
        idempotency_key=idempotency_key,
        input_data=input_data,
        command=lambda: command(raw),
    )
    return await post_payload(ctx, result, raw)


# Either approval permission, checked against the step the post waits for.
_REVIEW = "INTERNAL_APPROVAL|CLIENT_APPROVAL"
_STEPS = {INTERNAL: Permission.INTERNAL_APPROVAL, CLIENT: Permission.CLIENT_APPROVAL}
_VERDICTS = {"approvePost": "approve", "requestChanges": "request_changes", "rejectPost": "reject"}


async def _review(ctx: Context, operation: str, data: ReviewPostInput) -> PostPayload:
    """Approve, request changes or reject, at the step the post waits for, if the caller's role may take it."""
    raw, key = post_key(data.post_id)
    p = await require(ctx, key, Permission.SEE, operation)
    steps = {step for step, perm in _STEPS.items() if p.can(perm, key)}
    status = await ctx.db.fetchval("SELECT status FROM read.posts WHERE tenant_id = $1 AND id = $2", key, raw)
    waits_for = {"IN_REVIEW": INTERNAL, "AWAITING_CLIENT": CLIENT}.get(status or "")
    # Refused (and recorded) when the caller may take no review step, or not the one the post waits for; a post
    # that waits for no review at all is the domain's INVALID_TRANSITION.
    refused = _STEPS[waits_for] if waits_for and waits_for not in steps else None
    if not steps:
        refused = Permission.INTERNAL_APPROVAL
    if refused is not None:
        await record_denial(ctx, key, operation, refused)
        raise Forbidden(f"your role does not allow '{refused.value}' on this tenant")
    domain = ctx.services.domain
    result = await execute(
        ctx,
        operation=operation,
        actor=actor_of(p, key, data.comment),
        idempotency_key=data.idempotency_key,
        input_data=_plain(data),
        command=lambda: domain.review_post(raw, p.user_id, _VERDICTS[operation], data.comment, steps),
    )
    return await post_payload(ctx, result, raw)


@strawberry.type
class PublishingMutation:
    @strawberry.mutation(**secured(Permission.REVISE_STRATEGY))
    async def revise_strategy(self, info: Info[Context, None], input: ReviseStrategyInput) -> StrategyPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.REVISE_STRATEGY, "reviseStrategy")
        domain = ctx.services.domain
        timezone = await _timezone(ctx, key)

        def command() -> Outcome[int]:
            objectives = [
                Objective(title=o.title, intent=o.intent.value, metric=o.metric, target=o.target,
                          channel_id=input_id(o.channel_id, "Channel", f"objectives.{i}.channelId"),
                          baseline=o.baseline, deadline=o.deadline and instant(o.deadline, timezone))
                for i, o in enumerate(input.objectives)
            ]
            personas = [
                Persona(name=pe.name, description=pe.description, channel_ids=tuple(
                    input_id(c, "Channel", f"personas.{i}.channelIds.{j}") or ""
                    for j, c in enumerate(pe.channel_ids or [])
                ))
                for i, pe in enumerate(input.personas)
            ]
            line = input.editorial_line
            editorial = EditorialLine(
                tone=line.tone,
                themes=tuple(line.themes or ()),
                hot_share=line.hot_share,
                posts_per_week=tuple(
                    (input_id(f.channel_id, "Channel", f"editorialLine.postsPerWeek.{i}.channelId") or "",
                     f.posts_per_week)
                    for i, f in enumerate(line.posts_per_week or [])
                ),
            )
            return domain.revise_strategy(key, input.reason, input.positioning, objectives, personas, editorial)

        result = await execute(
            ctx, operation="reviseStrategy", actor=actor_of(p, key, input.reason),
            idempotency_key=input.idempotency_key, input_data=_plain(input), command=command,
        )
        strategy = None
        if result.value is not None and not result.errors:
            row = await ctx.db.fetchrow(
                "SELECT * FROM read.strategies WHERE tenant_id = $1 AND version = $2", key, result.value
            )
            strategy = Strategy.from_row(row) if row else None
        return StrategyPayload(strategy=strategy, user_errors=result.errors, position=result.position_text,
                               consistent=result.consistent)

    @strawberry.mutation(**secured(Permission.DRAFT))
    async def create_campaign(self, info: Info[Context, None], input: CreateCampaignInput) -> CampaignPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.DRAFT, "createCampaign")
        domain = ctx.services.domain
        timezone = await _timezone(ctx, key)
        starts_at, ends_at = (t and instant(t, timezone) for t in (input.starts_at, input.ends_at))

        def command() -> Outcome[str]:
            objective_ids = [input_id(o, "Objective", f"objectiveIds.{i}") or ""
                             for i, o in enumerate(input.objective_ids or [])]
            return domain.create_campaign(key, input.name, input.hashtag, starts_at, ends_at,
                                          objective_ids, input.budget)

        result = await execute(
            ctx, operation="createCampaign", actor=actor_of(p, key), idempotency_key=input.idempotency_key,
            input_data=_plain(input), command=command,
        )
        campaign = None
        if result.value and not result.errors:
            row = await ctx.db.fetchrow("SELECT * FROM read.campaigns WHERE tenant_id = $1 AND id = $2", key,
                                        result.value)
            campaign = Campaign.from_row(row) if row else None
        return CampaignPayload(campaign=campaign, user_errors=result.errors, position=result.position_text,
                               consistent=result.consistent)

    @strawberry.mutation(**secured(Permission.DRAFT))
    async def draft_post(self, info: Info[Context, None], input: DraftPostInput) -> PostPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.DRAFT, "draftPost")
        domain = ctx.services.domain

        def command() -> Outcome[str]:
            return domain.draft_post(
                key, p.user_id, _variants(input.variants), input_id(input.campaign_id, "Campaign", "campaignId"),
                input_id(input.objective_id, "Objective", "objectiveId"),
                input_id(input.persona_id, "Persona", "personaId"), input.temperature.value,
            )

        result = await execute(
            ctx, operation="draftPost", actor=actor_of(p, key), idempotency_key=input.idempotency_key,
            input_data=_plain(input), command=command,
        )
        return await post_payload(ctx, result, result.value)

    @strawberry.mutation(**secured(Permission.DRAFT))
    async def edit_post(self, info: Info[Context, None], input: EditPostInput) -> PostPayload:
        domain = info.context.services.domain
        return await _post_command(
            info.context, input.post_id, "editPost", Permission.DRAFT,
            lambda raw: domain.edit_post(raw, _variants(input.variants), input.expected_version),
            reason=input.reason, input_data=_plain(input),
        )

    @strawberry.mutation(**secured(Permission.DRAFT))
    async def submit_post(self, info: Info[Context, None], input: PostActionInput) -> PostPayload:
        domain = info.context.services.domain
        return await _post_command(
            info.context, input.post_id, "submitPost", Permission.DRAFT, domain.submit_post,
            reason=input.reason, idempotency_key=input.idempotency_key, input_data=_plain(input),
        )

    @strawberry.mutation(**secured(_REVIEW))
    async def approve_post(self, info: Info[Context, None], input: ReviewPostInput) -> PostPayload:
        return await _review(info.context, "approvePost", input)

    @strawberry.mutation(**secured(_REVIEW))
    async def request_changes(self, info: Info[Context, None], input: ReviewPostInput) -> PostPayload:
        return await _review(info.context, "requestChanges", input)

    @strawberry.mutation(**secured(_REVIEW))
    async def reject_post(self, info: Info[Context, None], input: ReviewPostInput) -> PostPayload:
        return await _review(info.context, "rejectPost", input)

    @strawberry.mutation(**secured(Permission.DRAFT))
    async def schedule_post(self, info: Info[Context, None], input: SchedulePostInput) -> PostPayload:
        domain = info.context.services.domain
        return await _post_command(
            info.context, input.post_id, "schedulePost", Permission.DRAFT,
            lambda raw: domain.schedule_post(raw, input.at),
            idempotency_key=input.idempotency_key, input_data=_plain(input),
        )

    @strawberry.mutation(**secured(Permission.DRAFT))
    async def cancel_post(self, info: Info[Context, None], input: PostActionInput) -> PostPayload:
        domain = info.context.services.domain
        return await _post_command(
            info.context, input.post_id, "cancelPost", Permission.DRAFT, domain.cancel_post,
            reason=input.reason, idempotency_key=input.idempotency_key, input_data=_plain(input),
        )

    @strawberry.mutation(**secured(Permission.CRISIS))
    async def activate_crisis(self, info: Info[Context, None], input: ActivateCrisisInput) -> TenantPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.CRISIS, "activateCrisis")
        scheduled = [r["id"] for r in await ctx.db.fetch(
            "SELECT id FROM read.posts WHERE tenant_id = $1 AND status = 'SCHEDULED' AND temperature = 'COLD'", key
        )]
        domain = ctx.services.domain
        result = await execute(
            ctx, operation="activateCrisis", actor=actor_of(p, key, input.reason), input_data=_plain(input),
            command=lambda: domain.activate_crisis(key, input.reason, scheduled),
        )
        return await tenant_payload(ctx, result, key)

    @strawberry.mutation(**secured(Permission.CRISIS))
    async def deactivate_crisis(self, info: Info[Context, None], input: TenantActionInput) -> TenantPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.CRISIS, "deactivateCrisis")
        held = [r["id"] for r in await ctx.db.fetch(
            "SELECT id FROM read.posts WHERE tenant_id = $1 AND status = 'HELD'", key
        )]
        domain = ctx.services.domain
        result = await execute(
            ctx, operation="deactivateCrisis", actor=actor_of(p, key, input.reason), input_data=_plain(input),
            command=lambda: domain.deactivate_crisis(key, held),
        )
        return await tenant_payload(ctx, result, key)

