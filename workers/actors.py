"""Thin, idempotent actors: they take ids, load what they need, and record the outcome as events."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage

from domain.app import Parvis
from domain.post import PostStatus
from workers.broker import QUEUE
from workers.connectors.base import ChannelRef, ConnectorError, FailureKind, Health, Published, VariantRef

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


# A transient failure (network, rate limit) is retried this many times before the post is marked FAILED.
PUBLISH_RETRIES = 5
# A job delivered a little before its time (clocks of two machines) still publishes.
_EARLY = timedelta(seconds=5)


def publish_key(post_id: str, channel_id: str) -> str:
    """The idempotency key of one post on one channel: the same on every retry, so a platform posts it once."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"parvis:publish:{post_id}:{channel_id}").hex


def publish_post(deps: WorkerDeps, post_id: str) -> None:
    """Publish a due post on each of its channels, once; a redelivered job continues where the last one stopped."""
    domain = deps.domain
    post = domain.post(post_id)
    if post.status == PostStatus.SCHEDULED.value:
        if post.scheduled_at is None or post.scheduled_at > domain.now() + _EARLY:
            return  # rescheduled later: the job of the new time publishes it
        if domain.start_publishing(post_id).value != PostStatus.PUBLISHING.value:
            return  # held: the tenant went into crisis mode
        post = domain.post(post_id)
    elif post.status != PostStatus.PUBLISHING.value:
        return  # published, failed, held or cancelled in the meantime
    for variant in post.variants:
        channel_id = variant["channel_id"]
        if channel_id in post.published:
            continue
        try:
            done = _publish_variant(deps, post_id, channel_id, variant)
        except ConnectorError as exc:
            if exc.transient and _retries() < PUBLISH_RETRIES:
                delay = int(exc.retry_after * 1000) if exc.retry_after else None
                raise dramatiq.Retry(exc.message, delay=delay) from None
            domain.record_publish_failure(post_id, channel_id, exc.kind.value, exc.message)
            return
        domain.record_variant_published(post_id, channel_id, done.external_id, done.external_url, done.published_at)


def _publish_variant(deps: WorkerDeps, post_id: str, channel_id: str, variant: dict[str, Any]) -> Published:
    channel = deps.domain.channel(channel_id)
    if not channel.connected:
        raise ConnectorError(FailureKind.AUTH_EXPIRED, "the channel was disconnected")
    connector = deps.connectors.get(channel.connector)
    if connector is None:
        raise ConnectorError(FailureKind.UNKNOWN, f"no '{channel.connector}' connector in this version")
    credentials = json.loads(deps.secrets.open(channel.credentials)) if channel.credentials else {}
    ref = ChannelRef(channel_id, channel.platform, channel.handle, credentials)
    body = VariantRef(variant["body"], tuple(variant.get("media_urls") or ()))
    result: Published = connector.publish(ref, body, publish_key(post_id, channel_id))
    return result


def _retries() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message is not None else 0


def expire_approval(deps: WorkerDeps, post_id: str, submission: int) -> None:
    """A pending approval of that submission lapses (nothing happens if the post moved on)."""
    deps.domain.expire_approval(post_id, submission)


JOBS: dict[str, Callable[..., None]] = {
    "check_channel": check_channel,
    "publish_post": publish_post,
    "expire_approval": expire_approval,
}


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
