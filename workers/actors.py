"""Thin, idempotent actors: they take ids, load what they need, and record the outcome as events."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from domain.app import Parvis
from workers.broker import QUEUE
from workers.connectors.base import ChannelRef, ConnectorError, Health

log = logging.getLogger("parvis.workers")


class Opener(Protocol):
    def open(self, sealed: str) -> str: ...


@dataclass
class WorkerDeps:
    """What the actors need, built by the composition root."""

    domain: Parvis
    secrets: Opener
    connectors: Mapping[str, Any]


def check_channel(deps: WorkerDeps, channel_id: str, check_id: str) -> None:
    """Check a channel's credentials through its connector and record the health (once per check)."""
    channel = deps.domain.channel(channel_id)
    if check_id in channel.checks_done or not channel.connected:
        return
    connector = deps.connectors.get(channel.connector)
    if connector is None:
        deps.domain.record_channel_health(
            channel_id, Health.UNKNOWN.value, f"no '{channel.connector}' connector in this version", check_id
        )
        return
    credentials = json.loads(deps.secrets.open(channel.credentials)) if channel.credentials else {}
    ref = ChannelRef(channel_id, channel.platform, channel.handle, credentials)
    try:
        result = connector.check(ref)
    except ConnectorError as exc:
        if exc.transient:
            raise  # dramatiq retries with backoff
        deps.domain.record_channel_health(channel_id, Health.UNKNOWN.value, f"{exc.kind.value}: {exc}", check_id)
        return
    deps.domain.record_channel_health(channel_id, result.health.value, result.detail, check_id)


JOBS: dict[str, Callable[..., None]] = {"check_channel": check_channel}


def declare_actors(broker: RedisBroker, deps: WorkerDeps) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Register every job as an actor on this broker (no global broker at import time)."""
    actors: dict[str, dramatiq.Actor[Any, Any]] = {}
    for name, fn in JOBS.items():

        def run(*args: Any, _fn: Callable[..., None] = fn, **kwargs: Any) -> None:
            _fn(deps, *args, **kwargs)

        actors[name] = dramatiq.Actor(
            run,
            broker=broker,
            actor_name=name,
            queue_name=QUEUE,
            priority=0,
            options={"max_retries": 8, "min_backoff": 500, "max_backoff": 60_000},
        )
    return actors
