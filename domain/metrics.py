"""Metric observations of a tenant's channels and posts, recorded in batches."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import event

from domain.base import ParvisAggregate, aggregate_id, kind_of, scope_of
from domain.errors import InvalidInput

if TYPE_CHECKING:
    from domain.app import Outcome

MAX_OBSERVATIONS = 10_000
_METRIC = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
# Metrics whose value is a level at an instant (the latest one counts); every other metric is a flow, summed.
STOCK_METRICS = frozenset({"followers", "newsletter_subscribers", "subscribers", "members"})


@dataclass(frozen=True)
class Observation:
    channel_id: str
    metric: str
    value: float
    at: datetime
    post_id: str | None = None
    source: str | None = None


class MetricBatch(ParvisAggregate):
    """One call's observations, saved together (a batch of up to 10,000 is one event)."""

    @staticmethod
    def create_id(tenant_key: str) -> str:
        return aggregate_id(tenant_key, "metrics")

    class Recorded(ParvisAggregate.Created):
        tenant_key: str
        observations: list[dict[str, Any]]

    @event(Recorded)
    def __init__(self, tenant_key: str, observations: list[dict[str, Any]]) -> None:
        self.tenant_key = tenant_key
        self.count = len(observations)


class MetricsCommands:
    """Mixed into the application service (domain.app.Parvis)."""

    commit: Callable[..., int | None]
    done: Callable[..., Outcome[Any]]
    exists: Callable[[str], bool]
    tenant: Callable[..., Any]
    now: Callable[[], datetime]
    check_channel: Callable[[str, str, str], None]

    def record_metrics(self, tenant_key: str, observations: list[Observation]) -> Outcome[int]:
        """All observations of the call, or none: the first bad one is refused, naming it."""

        self.tenant(tenant_key).check_not_offboarded()
        if not observations:
            raise InvalidInput("at least one observation", "observations")
        if len(observations) > MAX_OBSERVATIONS:
            raise InvalidInput(f"at most {MAX_OBSERVATIONS} observations in one call", "observations")
        channels: set[str] = set()
        posts: set[str] = set()
        latest = self.now() + timedelta(days=1)
        rows = []
        for i, o in enumerate(observations):
            where = f"observations.{i}"
            if o.channel_id not in channels:
                self.check_channel(tenant_key, o.channel_id, f"{where}.channelId")
                channels.add(o.channel_id)
            if o.post_id is not None and o.post_id not in posts:
                if scope_of(o.post_id) != tenant_key or kind_of(o.post_id) != "post" or not self.exists(o.post_id):
                    raise InvalidInput("no post of this tenant has this id", f"{where}.postId")
                posts.add(o.post_id)
            if not _METRIC.match(o.metric or ""):
                raise InvalidInput("metric must be a snake_case name such as followers", f"{where}.metric")
            if not math.isfinite(o.value):
                raise InvalidInput("value must be a finite number", f"{where}.value")
            if o.at.tzinfo is None or o.at.utcoffset() is None:
                raise InvalidInput("at must carry an offset", f"{where}.at")
            if o.at > latest:
                raise InvalidInput("at is in the future", f"{where}.at")
            if o.source is not None and len(o.source) > 100:
                raise InvalidInput("source must be at most 100 characters", f"{where}.source")
            rows.append({"channel_id": o.channel_id, "post_id": o.post_id, "metric": o.metric,
                         "value": float(o.value), "at": o.at.isoformat(), "source": o.source})
        batch = MetricBatch(tenant_key=tenant_key, observations=rows)
        return self.done(len(rows), batch)
