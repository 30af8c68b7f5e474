"""KPI progress and metric series of a tenant, from its observations and the strategy in force."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import strawberry

from api import ids
from api.access import inherit_permissions
from api.context import Context
from api.errors import BadInput
from api.metrics.enums import Granularity
from api.publishing.types import Objective
from domain.metrics import STOCK_METRICS


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


# A level: the latest value of each channel at the instant, added up. A flow: the sum over a period.
_STOCK = """
SELECT sum(v) FROM (SELECT DISTINCT ON (channel_id) value AS v FROM read.metric_observations
  WHERE tenant_id = $1 AND metric = $2 AND post_id = '' AND at <= $3 AND ($4::text IS NULL OR channel_id = $4)
  ORDER BY channel_id, at DESC) latest
"""
_FLOW = """
SELECT sum(value) FROM read.metric_observations
WHERE tenant_id = $1 AND metric = $2 AND at >= $3 AND at <= $4 AND ($5::text IS NULL OR channel_id = $5)
"""


async def kpis(ctx: Context, key: str, at: datetime | None) -> list[KpiProgress]:
    """Progress of each objective of the strategy in force at `at` (now by default)."""
    instant = at or datetime.now(UTC)
    versions = await ctx.db.fetch(
        "SELECT version, effective_from, objectives FROM read.strategies WHERE tenant_id = $1 AND effective_from <= $2 "
        "ORDER BY version", key, instant,
    )
    if not versions:
        return []
    # An objective runs from the first revision that set it.
    since: dict[str, datetime] = {}
    for v in versions:
        for o in json.loads(v["objectives"]) if isinstance(v["objectives"], str) else v["objectives"]:
            since.setdefault(o["id"], v["effective_from"])
    current = versions[-1]
    objectives = json.loads(current["objectives"]) if isinstance(current["objectives"], str) else current["objectives"]
    return [await _progress(ctx, key, o, since[o["id"]], instant) for o in objectives]


async def _progress(ctx: Context, key: str, o: dict[str, Any], start: datetime, at: datetime) -> KpiProgress:
    deadline = datetime.fromisoformat(o["deadline"]) if o.get("deadline") else None
    channel = o.get("channel_id")
    baseline = o.get("baseline") or 0.0
    if o["metric"] in STOCK_METRICS:
        value = await ctx.db.fetchval(_STOCK, key, o["metric"], at, channel)
    else:
        # A flow adds to where the objective started: the baseline is what was already there.
        end = min(at, deadline) if deadline else at
        total = await ctx.db.fetchval(_FLOW, key, o["metric"], start, end, channel)
        value = None if total is None else baseline + float(total)
    progress = None if value is None else round((float(value) - baseline) / (o["target"] - baseline), 4)
    expected = None
    if deadline is not None:
        total = (deadline - start).total_seconds()
        expected = 1.0 if total <= 0 else round(min(1.0, max(0.0, (at - start).total_seconds() / total)), 4)
    on_track = progress is not None and (progress >= expected if expected is not None else progress > 0)
    return KpiProgress(objective=Objective.from_data(o), current=None if value is None else float(value),
                       progress=progress, on_track=on_track, expected=expected)


# The longest span one series covers: about two years of days, five of weeks, ten of months.
_MAX_SPAN = {"day": timedelta(days=732), "week": timedelta(weeks=260), "month": timedelta(days=3660)}


async def metric_series(ctx: Context, key: str, timezone: str, metric: str, channel_id: str | None, start: datetime,
                        end: datetime, granularity: Granularity) -> list[MetricPoint]:
    """Buckets of the tenant's calendar (days, weeks from Monday, months, in its time zone, DST included).

    A level (followers) shows its value at the end of each bucket, summed over channels; a flow, its sum;
    `engagement_rate` is engagements over impressions (reach where impressions are missing), per bucket."""
    if end <= start:
        raise BadInput("to must be after from")
    unit = granularity.value
    if end - start > _MAX_SPAN[unit]:
        raise BadInput(f"a series by {unit} spans at most {_MAX_SPAN[unit].days} days")
    channel = ids.decode(channel_id, "Channel", field="channelId")[1] if channel_id else None
    bucket = "(date_trunc($6, at AT TIME ZONE $5) AT TIME ZONE $5)"
    where = "tenant_id = $1 AND at >= $3 AND at < $4 AND ($2::text IS NULL OR channel_id = $2)"
    if metric == "engagement_rate":
        sql = (f"SELECT {bucket} AS b, sum(value) FILTER (WHERE metric = 'engagements') AS e, "
               "sum(value) FILTER (WHERE metric = 'impressions') AS i, sum(value) FILTER (WHERE metric = 'reach') AS r "
               f"FROM read.metric_observations WHERE {where} AND metric IN ('engagements', 'impressions', 'reach') "
               "GROUP BY b ORDER BY b")
        rows = await ctx.db.fetch(sql, key, channel, start, end, timezone, unit)
        return [MetricPoint(at=r["b"], value=round(r["e"] / (r["i"] or r["r"]), 6)) for r in rows
                if r["e"] is not None and (r["i"] or r["r"])]
    if metric in STOCK_METRICS:
        sql = (f"SELECT b, sum(v) AS value FROM (SELECT DISTINCT ON (b, channel_id) {bucket} AS b, value AS v "
               f"FROM read.metric_observations WHERE {where} AND metric = $7 AND post_id = '' "
               "ORDER BY b, channel_id, at DESC) last GROUP BY b ORDER BY b")
    else:
        sql = (f"SELECT {bucket} AS b, sum(value) AS value FROM read.metric_observations "
               f"WHERE {where} AND metric = $7 GROUP BY b ORDER BY b")
    rows = await ctx.db.fetch(sql, key, channel, start, end, timezone, unit, metric)
    return [MetricPoint(at=r["b"], value=float(r["value"])) for r in rows]
