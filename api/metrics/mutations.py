"""`recordMetrics`: up to 10,000 observations in one call, all stored or none."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from api.access import actor_of, require, secured
from api.commands import execute
from api.context import Context
from api.directory.mutations import tenant_key_of
from api.moderation.mutations import IngestPayload
from api.publishing.mutations import input_id
from domain.app import Outcome
from domain.errors import InvalidInput
from domain.metrics import MAX_OBSERVATIONS, Observation
from domain.roles import Permission


@strawberry.input
class MetricInput:
    channel_id: strawberry.ID
    metric: str
    value: float
    at: datetime
    post_id: strawberry.ID | None = None
    source: str | None = None


@strawberry.input
class RecordMetricsInput:
    tenant_id: strawberry.ID
    observations: list[MetricInput]


@strawberry.type
class MetricsMutation:
    @strawberry.mutation(**secured(Permission.MODERATE))
    async def record_metrics(self, info: Info[Context, None], input: RecordMetricsInput) -> IngestPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.MODERATE, "recordMetrics")
        domain = ctx.services.domain

        def command() -> Outcome[int]:
            if len(input.observations) > MAX_OBSERVATIONS:
                raise InvalidInput(f"at most {MAX_OBSERVATIONS} observations in one call", "observations")
            return domain.record_metrics(key, [
                Observation(channel_id=input_id(o.channel_id, "Channel", f"observations.{i}.channelId") or "",
                            metric=o.metric, value=o.value, at=o.at,
                            post_id=input_id(o.post_id, "Post", f"observations.{i}.postId"), source=o.source)
                for i, o in enumerate(input.observations)
            ])

        result = await execute(ctx, operation="recordMetrics", actor=actor_of(p, key), input_data=None,
                               command=command)
        return IngestPayload(accepted=result.value or 0, duplicates=0, user_errors=result.errors,
                             position=result.position_text, consistent=result.consistent)
