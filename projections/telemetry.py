"""What the projection runner tells operators (Prometheus): how far each read model is behind the event store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import propagate, trace
from prometheus_client import Counter, Gauge, Histogram

tracer = trace.get_tracer("parvis.projections")

LAG_EVENTS = Gauge("parvis_projection_lag_events", "Events committed but not yet in the read model", ["projection"])
POSITION = Gauge("parvis_projection_position", "Last event position in the read model", ["projection"])
PROCESSED = Counter("parvis_projection_events_total", "Events applied to the read model", ["projection"])
DELAY = Histogram(
    "parvis_projection_delay_seconds", "From an event's commit to its batch being in the read model", ["projection"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def links(metas: Sequence[dict[str, Any]], limit: int = 32) -> list[trace.Link]:
    """Links from a batch's span to the traces of the requests that recorded its events."""
    seen: list[str] = []
    for meta in metas:
        parent = meta.get("traceparent")
        if isinstance(parent, str) and parent not in seen:
            seen.append(parent)
    out = []
    for parent in seen[:limit]:
        context = trace.get_current_span(propagate.extract({"traceparent": parent})).get_span_context()
        if context.is_valid:
            out.append(trace.Link(context))
    return out
