"""KPI progress and metric series of a tenant, from its observations and the strategy in force."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from api import ids
from api.access import inherit_permissions
from api.context import Context
from api.errors import BadInput
from api.inputs import instant
from api.metrics.enums import Granularity
from api.publishing.types import Objective
from projections import figures


@inherit_permissions
@strawberry.type
class KpiProgress:
    objective: Objective
    current: float | None
    progress: float | None = strawberry.field(description="(current - baseline) / (target - baseline); 1 = reached.")
    on_track: bool = strawberry.field(description="Progress at least the share of the objective's time elapsed.")
    expected: float | None = strawberry.field(description="The share of the period elapsed (null without deadline).")


@inherit_permissions
@strawberry.type
class MetricPoint:
    at: datetime
    value: float


async def kpis(ctx: Context, key: str, at: datetime | None) -> list[KpiProgress]:
    """Progress of each objective of the strategy in force at `at` (now by default)."""
    return [KpiProgress(objective=Objective.from_data(k.objective), current=k.current, progress=k.progress,
                        on_track=k.on_track, expected=k.expected)
            for k in await figures.kpis(ctx.db, key, at or datetime.now(UTC))]


async def metric_series(ctx: Context, key: str, timezone: str, metric: str, channel_id: str | None, start: datetime,
                        end: datetime, granularity: Granularity) -> list[MetricPoint]:
    """Buckets of the tenant's calendar (days, weeks from Monday, months, in its time zone, DST included).

    A level (followers) shows its value at the end of each bucket, summed over channels; a flow, its sum;
    `engagement_rate` is engagements over impressions (reach where impressions are missing), per bucket."""
    start, end = instant(start, timezone), instant(end, timezone)  # a time without an offset is the tenant's
    if end <= start:
        raise BadInput("to must be after from")
    unit = granularity.value
    if end - start > figures.MAX_SPAN[unit]:
        raise BadInput(f"a series by {unit} spans at most {figures.MAX_SPAN[unit].days} days")
    channel = ids.decode(channel_id, "Channel", field="channelId")[1] if channel_id else None
    points = await figures.series(ctx.db, key, timezone, metric, channel, start, end, unit)
    return [MetricPoint(at=at, value=value) for at, value in points]
