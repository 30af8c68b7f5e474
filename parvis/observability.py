"""Logs, metrics and traces of every process.

- Logs: structlog renders every record (the stdlib `logging` calls of the product and of its libraries) as one
  JSON object per line, with the correlation id, the tenant and the job when known (PARVIS_LOG_FORMAT=console
  for people reading a terminal).
- Metrics: Prometheus; the API serves `/metrics`, the projector and the workers on PARVIS_PROJECTOR_METRICS_PORT
  and PARVIS_WORKER_METRICS_PORT (0: not served).
- Traces: OpenTelemetry, exported over OTLP/HTTP to PARVIS_OTLP_ENDPOINT when set. A mutation's trace context
  is stamped on its events (`traceparent` in the event metadata), so the projector's batch and the worker's job
  that follow from it join the same trace."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import start_http_server

from domain.context import current_actor
from parvis.settings import Settings

log = logging.getLogger("parvis")


def _actor_context(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """The correlation and tenant of the command being executed, when the record does not carry its own."""
    actor = current_actor()
    if actor.correlation_id:
        event.setdefault("correlation_id", actor.correlation_id)
    if actor.on_behalf_of:
        event.setdefault("tenant_id", actor.on_behalf_of)
    return event


def configure_logging(settings: Settings, service: str) -> None:
    """Route every logging record through structlog: JSON lines (or console) on stderr."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _actor_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=False) if settings.log_format == "console"
                     else structlog.processors.JSONRenderer())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    lambda _l, _n, e: {"service": service, **e}, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # One line per outgoing HTTP request (health probes, connectors) is noise at INFO.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


def configure_tracing(settings: Settings, service: str) -> None:
    """A tracer provider for the process; spans leave it only when an OTLP endpoint is set."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"parvis-{service}"}))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    trace.set_tracer_provider(provider)


def serve_metrics(port: int, service: str) -> None:
    """Prometheus metrics of a process without HTTP of its own (projector, workers); 0 serves none."""
    if port <= 0:
        return
    try:
        start_http_server(port)
    except OSError as exc:
        log.warning("%s: metrics not served on port %d: %s", service, port, exc)
