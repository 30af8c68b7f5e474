"""Figures read from the metrics read model: KPI progress, series, engagement rates.

Shared by the API (per request, as the caller) and the report generator (as the worker), over any reader
with asyncpg's `fetch`/`fetchval`. The rules:
- a level (followers) is the latest value of each channel at the instant, added up over channels;
- a flow (donations, engagements) is the sum over a period;
- `engagement_rate` is engagements over impressions, or over reach where impressions are missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from domain.metrics import STOCK_METRICS

ENGAGEMENT_RATE = "engagement_rate"


class Reader(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[Any]: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class Kpi:
    objective: dict[str, Any]
    current: float | None
    progress: float | None
    on_track: bool
    expected: float | None
    start: datetime


@dataclass(frozen=True)
class Rate:
    """Engagements over impressions (or reach), counted only where both are known: a post or channel measured
    by a platform that tells no impressions (Mastodon, Bluesky) adds to `engagements`, not to the rate."""

    engagements: float | None
    impressions: float | None
    reach: float | None
    measured: float | None = None  # engagements of what has a denominator
    denominator: float | None = None

    @property
    def value(self) -> float | None:
        if self.measured is None or not self.denominator:
            return None
        return round(self.measured / self.denominator, 6)


_STOCK = """
SELECT sum(v) FROM (SELECT DISTINCT ON (channel_id) value AS v FROM read.metric_observations
  WHERE tenant_id = $1 AND metric = $2 AND post_id = '' AND at <= $3 AND ($4::text IS NULL OR channel_id = $4)
  ORDER BY channel_id, at DESC) latest
"""
_FLOW = """
SELECT sum(value) FROM read.metric_observations
WHERE tenant_id = $1 AND metric = $2 AND at >= $3 AND at <= $4 AND ($5::text IS NULL OR channel_id = $5)
"""
# Per unit (a channel's own figures, or one post), then added up: only units with a denominator count.
_UNITS = """
SELECT {select} channel_id, post_id, sum(value) FILTER (WHERE metric = 'engagements') AS e,
       sum(value) FILTER (WHERE metric = 'impressions') AS i, sum(value) FILTER (WHERE metric = 'reach') AS r
FROM read.metric_observations WHERE {where} AND metric IN ('engagements', 'impressions', 'reach')
GROUP BY {group} channel_id, post_id
"""
_TOTALS = """
SELECT {group} sum(e) AS e, sum(i) AS i, sum(r) AS r,
       sum(e) FILTER (WHERE coalesce(nullif(i, 0), r) > 0) AS m, sum(coalesce(nullif(i, 0), r)) AS d
FROM ({units}) u {tail}
"""
_RATE = _TOTALS.format(group="", tail="", units=_UNITS.format(select="", group="", where=(
    "tenant_id = $1 AND ($2::text IS NULL OR channel_id = $2) AND ($3::text IS NULL OR post_id = $3) "
    "AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at <= $5)")))


def _rate(row: Any) -> Rate:
    return Rate(*(None if row[c] is None else float(row[c]) for c in ("e", "i", "r", "m", "d")))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def engagement(
    db: Reader, key: str, *, channel: str | None = None, post: str | None = None,
    start: datetime | None = None, end: datetime | None = None,
) -> Rate:
    """Engagements, impressions and reach of a post, a channel or the tenant, over [start, end]."""
    rows = await db.fetch(_RATE, key, channel, post, start, end)
    return _rate(rows[0])


_BY_POST = _TOTALS.format(group="post_id,", tail="GROUP BY post_id", units=_UNITS.format(
    select="", group="", where="post_id = ANY($1::text[])"))


async def engagement_by_post(db: Reader, post_ids: list[str]) -> dict[str, Rate]:
    """Each post's engagements over its impressions (or reach), all channels, in one query."""
    return {r["post_id"]: _rate(r) for r in await db.fetch(_BY_POST, post_ids)}


async def kpis(db: Reader, key: str, at: datetime) -> list[Kpi]:
    """Progress of each objective of the strategy in force at `at`."""
    versions = await db.fetch(
        "SELECT version, effective_from, objectives FROM read.strategies WHERE tenant_id = $1 AND effective_from <= $2 "
        "ORDER BY version", key, at,
    )
    if not versions:
        return []
    # An objective runs from the first revision that set it.
    since: dict[str, datetime] = {}
    for v in versions:
        for o in _json(v["objectives"]):
            since.setdefault(o["id"], v["effective_from"])
    return [await kpi(db, key, o, since[o["id"]], at) for o in _json(versions[-1]["objectives"])]


async def kpi(db: Reader, key: str, o: dict[str, Any], start: datetime, at: datetime) -> Kpi:
    """One objective at `at`: a level's latest value; a flow's baseline plus its sum since the objective started."""
    deadline = datetime.fromisoformat(o["deadline"]) if o.get("deadline") else None
    if deadline is not None and deadline.utcoffset() is None:
        # Stored before the API resolved deadlines in the tenant's time zone: read as UTC, so that it compares.
        deadline = deadline.replace(tzinfo=UTC)
    channel = o.get("channel_id")
    baseline = o.get("baseline") or 0.0
    end = min(at, deadline) if deadline else at
    value: float | None
    if o["metric"] == ENGAGEMENT_RATE:
        value = (await engagement(db, key, channel=channel, start=start, end=end)).value
    elif o["metric"] in STOCK_METRICS:
        level = await db.fetchval(_STOCK, key, o["metric"], at, channel)
        value = None if level is None else float(level)
    else:
        # A flow adds to where the objective started: the baseline is what was already there.
        total = await db.fetchval(_FLOW, key, o["metric"], start, end, channel)
        value = None if total is None else baseline + float(total)
    span = o["target"] - baseline
    progress = None if value is None or span == 0 else round((value - baseline) / span, 4)
    expected = None
    if deadline is not None:
        total_seconds = (deadline - start).total_seconds()
        elapsed = (at - start).total_seconds()
        expected = 1.0 if total_seconds <= 0 else round(min(1.0, max(0.0, elapsed / total_seconds)), 4)
    on_track = progress is not None and (progress >= expected if expected is not None else progress > 0)
    return Kpi(objective=o, current=value, progress=progress, on_track=on_track, expected=expected, start=start)


# The longest span one series covers: about two years of days, five of weeks, ten of months.
MAX_SPAN = {"day": timedelta(days=732), "week": timedelta(weeks=260), "month": timedelta(days=3660)}


async def series(
    db: Reader, key: str, timezone: str, metric: str, channel: str | None, start: datetime, end: datetime, unit: str
) -> list[tuple[datetime, float]]:
    """Buckets of the tenant's calendar (days, weeks from Monday, months, in its time zone, DST included).

    A level shows its value at the end of each bucket, summed over channels; a flow, its sum; the
    engagement rate, engagements over impressions (or reach) per bucket."""
    bucket = "(date_trunc($6, at AT TIME ZONE $5) AT TIME ZONE $5)"
    where = "tenant_id = $1 AND at >= $3 AND at < $4 AND ($2::text IS NULL OR channel_id = $2)"
    if metric == ENGAGEMENT_RATE:
        units = _UNITS.format(select=f"{bucket} AS b,", group="b,", where=where)
        sql = _TOTALS.format(group="b,", units=units, tail="GROUP BY b ORDER BY b")
        rows = await db.fetch(sql, key, channel, start, end, timezone, unit)
        points = [(r["b"], _rate(r).value) for r in rows]
        return [(b, v) for b, v in points if v is not None]
    if metric in STOCK_METRICS:
        sql = (f"SELECT b, sum(v) AS value FROM (SELECT DISTINCT ON (b, channel_id) {bucket} AS b, value AS v "
               f"FROM read.metric_observations WHERE {where} AND metric = $7 AND post_id = '' "
               "ORDER BY b, channel_id, at DESC) last GROUP BY b ORDER BY b")
    else:
        sql = (f"SELECT {bucket} AS b, sum(value) AS value FROM read.metric_observations "
               f"WHERE {where} AND metric = $7 GROUP BY b ORDER BY b")
    rows = await db.fetch(sql, key, channel, start, end, timezone, unit, metric)
    return [(r["b"], float(r["value"])) for r in rows]
