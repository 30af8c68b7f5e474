"""A span per GraphQL operation; its trace context goes on the events the operation records."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opentelemetry import propagate, trace
from strawberry.extensions import SchemaExtension

tracer = trace.get_tracer("parvis.api")


def traceparent_of(span: Any) -> str | None:
    """The W3C `traceparent` of a span (None when tracing records nothing)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


class Tracing(SchemaExtension):
    """Opens a server span per operation, child of the caller's `traceparent` header when it sends one."""

    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context.context
        headers = getattr(getattr(ctx, "request", None), "headers", {})
        parent = propagate.extract({k.lower(): v for k, v in dict(headers).items()})
        name = self.execution_context.operation_name or "anonymous"
        span = tracer.start_span(f"graphql {name}", context=parent, kind=trace.SpanKind.SERVER,
                                 attributes={"graphql.operation.name": name})
        if ctx is not None:
            ctx.traceparent = traceparent_of(span)
        try:
            yield
        finally:
            span.end()
