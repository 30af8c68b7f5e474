"""Ambient request context: who acts, for which tenant, in which correlation; stamped on every event."""

from __future__ import annotations

import contextvars
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Actor:
    """The author of a command: a user with a role, a rule, or the system."""

    id: str = "system"
    role: str | None = None
    on_behalf_of: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    reason: str | None = None
    # W3C trace context of the request that caused the command: the projector and the workers continue its trace.
    traceparent: str | None = None


SYSTEM = Actor()
_actor: contextvars.ContextVar[Actor] = contextvars.ContextVar("parvis_actor", default=SYSTEM)


def current_actor() -> Actor:
    """The actor of the command being executed."""
    return _actor.get()


_ACTOR_FIELDS = tuple(f.name for f in fields(Actor))


def event_meta() -> dict[str, Any]:
    """Metadata stamped on a new event, read from the ambient actor."""
    actor = _actor.get()
    # The fields are strings: read them as they are (dataclasses.asdict deep-copies, a sixth of a batch's save).
    meta = {k: v for k in _ACTOR_FIELDS if (v := getattr(actor, k)) is not None}
    meta["actor"] = meta.pop("id")
    if "correlation_id" not in meta:
        meta["correlation_id"] = str(uuid.uuid4())
    return meta


def set_actor(actor: Actor) -> contextvars.Token[Actor]:
    """Set the ambient actor until reset_actor() (for middleware that cannot use a with-block)."""
    if actor.correlation_id is None:
        actor = replace(actor, correlation_id=str(uuid.uuid4()))
    return _actor.set(actor)


def reset_actor(token: contextvars.Token[Actor]) -> None:
    _actor.reset(token)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Set the ambient actor for the duration of a block (API and worker middleware use this)."""
    if actor.correlation_id is None:
        actor = replace(actor, correlation_id=str(uuid.uuid4()))
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


@contextmanager
def with_reason(reason: str | None) -> Iterator[None]:
    """Attach a person's stated reason to the events of a block."""
    token = _actor.set(replace(_actor.get(), reason=reason))
    try:
        yield
    finally:
        _actor.reset(token)


_clock: contextvars.ContextVar[Callable[[], datetime] | None] = contextvars.ContextVar("parvis_clock", default=None)


def event_time() -> datetime:
    """The time stamped on new events: the wall clock, or the clock a test or a replay set."""
    fn = _clock.get()
    return fn() if fn is not None else datetime.now(UTC)


@contextmanager
def clock(fn: Callable[[], datetime]) -> Iterator[None]:
    """Run a block on another clock (tests that span weeks of simulated time)."""
    token = _clock.set(fn)
    try:
        yield
    finally:
        _clock.reset(token)


@dataclass(frozen=True)
class Receipt:
    """The idempotency key a command answers under: its result is stored in the transaction of its events, so that
    a retry after a cut finds the first result rather than running the command again."""

    principal: str
    key: str


_receipt: contextvars.ContextVar[Receipt | None] = contextvars.ContextVar("parvis_receipt", default=None)


def current_receipt() -> Receipt | None:
    return _receipt.get()


@contextmanager
def answering(receipt: Receipt | None) -> Iterator[None]:
    """Run a block whose saves record their command's result under an idempotency key (None: no key)."""
    token = _receipt.set(receipt)
    try:
        yield
    finally:
        _receipt.reset(token)


def receipt_json(value: Any, errors: list[dict[str, Any]] | None = None) -> str:
    """How a command's result is stored under its idempotency key (read back by the API on a retry)."""
    return json.dumps({"value": value, "errors": errors or []})
