"""The dramatiq broker on Redis, with the middleware that sets tenant and actor context."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage, Middleware

from domain.context import Actor, reset_actor, set_actor

QUEUE = "parvis"


class ContextMiddleware(Middleware):
    """Every job runs as the actor named in its options (default: system), reset afterwards."""

    def __init__(self) -> None:
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message[Any]) -> None:
        options = message.options
        actor = Actor(
            id=str(options.get("parvis_actor") or "system"),
            correlation_id=options.get("parvis_correlation") or message.message_id,
            causation_id=options.get("parvis_causation"),
        )
        self._local.token = set_actor(actor)

    def _reset(self) -> None:
        token = getattr(self._local, "token", None)
        if token is not None:
            reset_actor(token)
            self._local.token = None

    def after_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], *, result: Any = None, exception: Any = None
    ) -> None:
        self._reset()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.Message[Any]) -> None:
        self._reset()


def make_broker(redis_url: str, namespace: str = "parvis") -> RedisBroker:
    """A Redis broker; nothing connects until the first command."""
    broker = RedisBroker(url=redis_url, namespace=namespace)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(ContextMiddleware())
    return broker
