"""Base aggregate and event classes: text ids scoped by tenant, metadata stamped from context."""

from __future__ import annotations

import re
import uuid
from dataclasses import field
from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    MetaDomainEvent,
)

from domain.context import event_meta, event_time

KEY_RE = re.compile(r"^[0-9a-f]{32}$")


def new_key() -> str:
    """A new scope key (tenant or agency): 32 lowercase hex characters."""
    return uuid.uuid4().hex


def aggregate_id(scope: str, kind: str, key: str | None = None) -> str:
    """The id of an aggregate: '<scope>/<kind>/<key>', so that a scope is a primary-key range."""
    return f"{scope}/{kind}/{key or uuid.uuid4().hex}"


def scope_of(aggregate_id_: str) -> str:
    """The tenant (or agency) key that owns an aggregate id."""
    return aggregate_id_.split("/", 1)[0]


def kind_of(aggregate_id_: str) -> str:
    """The kind part of an aggregate id ('tenant', 'channel', ...)."""
    parts = aggregate_id_.split("/")
    return parts[1] if len(parts) > 2 else ""


class ParvisEvent(metaclass=MetaDomainEvent):
    """Fields common to every Parvis event, including the metadata taken from context."""

    originator_id: str
    originator_version: int
    timestamp: datetime
    meta: dict[str, Any] = field(default_factory=event_meta, kw_only=True)

    # Names of fields that hold ciphertext; the history shows them redacted.
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @staticmethod
    def create_timestamp() -> datetime:
        """When the event happens: now, or the time of a clock set with domain.context.clock (tests)."""
        return event_time()


class ParvisAggregate(BaseAggregate[str]):
    """An aggregate that belongs to exactly one tenant (or agency) scope."""

    class Event(ParvisEvent, CanMutateAggregate[str]):
        pass

    class Created(Event, CanInitAggregate[str]):
        originator_topic: str

    @property
    def scope(self) -> str:
        """The tenant or agency key this aggregate belongs to."""
        return scope_of(self.id)
