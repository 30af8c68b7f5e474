"""Ambient request context: who acts, for which tenant, in which correlation; stamped on every event."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
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


SYSTEM = Actor()
_actor: contextvars.ContextVar[Actor] = contextvars.ContextVar("parvis_actor", default=SYSTEM)


def current_actor() -> Actor:
    """The actor of the command being executed."""
    return _actor.get()


def event_meta() -> dict[str, Any]:
    """Metadata stamped on a new event, read from the ambient actor."""
    actor = _actor.get()
    meta = {k: v for k, v in asdict(actor).items() if v is not None}
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
