"""What a projection is: named tables, a version, and a batch handler; plus the event envelope."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import cached_property
from typing import Any

import asyncpg
from eventsourcing.persistence import StoredEvent

from domain.app import make_mapper
from domain.base import ParvisEvent, scope_of
from projections.store import rls

_MAPPER = make_mapper()
# A W3C traceparent in an event's stored JSON (a quote inside a user's text is escaped, so it cannot forge one).
_TRACEPARENT = re.compile(rb'"traceparent":\s*"([0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})"')
_BASE_FIELDS = {"originator_id", "originator_version", "timestamp", "meta", "originator_topic"}


@dataclass
class Envelope:
    """One stored event as a projection sees it: position, identity, raw bytes and the decoded event."""

    position: int
    originator_id: str
    version: int
    topic: str
    state: bytes
    _decoded: ParvisEvent | None = field(default=None, repr=False)

    @classmethod
    def from_row(cls, row: Any) -> Envelope:
        return cls(
            position=row["notification_id"],
            originator_id=row["originator_id"],
            version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )

    @property
    def scope(self) -> str:
        return scope_of(self.originator_id)

    @cached_property
    def event_type(self) -> str:
        """The event class name, e.g. 'Created' or 'StatusChanged'."""
        return self.topic.rsplit(".", 1)[-1]

    @cached_property
    def aggregate_type(self) -> str:
        """The aggregate class name, e.g. 'Tenant'."""
        return self.topic.split(":", 1)[-1].split(".")[0]

    @property
    def event(self) -> ParvisEvent:
        if self._decoded is None:
            stored = StoredEvent(self.originator_id, self.version, self.topic, self.state)
            self._decoded = _MAPPER.to_domain_event(stored)  # type: ignore[assignment]
        assert self._decoded is not None
        return self._decoded

    @property
    def e(self) -> Any:
        """The decoded event, untyped: handlers read the fields of the event class they handle."""
        return self.event

    @property
    def meta(self) -> dict[str, Any]:
        return self.event.meta

    @property
    def traceparent(self) -> str | None:
        """The trace context stamped on the event, read from its bytes unless the event is already decoded:
        decoding every event of every batch for its trace link cost each read model a decode per event."""
        if self._decoded is not None:
            value = self._decoded.meta.get("traceparent")
            return value if isinstance(value, str) else None
        found = _TRACEPARENT.search(self.state)
        return found.group(1).decode() if found else None

    @property
    def at(self) -> datetime:
        return self.event.timestamp

    def data(self) -> dict[str, Any]:
        """The event's own fields as JSON-ready values, secrets redacted."""
        event = self.event
        secret = type(event).SECRET_FIELDS
        out: dict[str, Any] = {}
        for key, value in vars(event).items():
            if key in _BASE_FIELDS:
                continue
            out[key] = "[redacted]" if key in secret and value is not None else _plain(value)
        return out

    def canonical(self) -> bytes:
        """The bytes the audit hash chain covers: identity, topic and stored state."""
        head = f"{self.originator_id}\n{self.version}\n{self.topic}\n".encode()
        return head + self.state


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def dumps(value: Any) -> str:
    """JSON for jsonb parameters."""
    return json.dumps(value, separators=(",", ":"), default=str)


async def fetch_rows(
    conn: asyncpg.Connection, table: str, ids: Sequence[str], json_columns: frozenset[str]
) -> dict[str, dict[str, Any]]:
    """Rows of a read-model table by id, as dicts with their jsonb columns decoded."""
    out: dict[str, dict[str, Any]] = {}
    if not ids:
        return out
    for record in await conn.fetch(f"SELECT * FROM {table} WHERE id = ANY($1)", list(ids)):
        row = dict(record)
        for column in json_columns:
            if isinstance(row[column], str):
                row[column] = json.loads(row[column])
        out[row["id"]] = row
    return out


async def upsert_rows(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], json_columns: frozenset[str],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """Insert or replace rows keyed by (tenant_id, id) in one round trip."""
    if not rows:
        return
    values = ", ".join(f"${i}::jsonb" if c in json_columns else f"${i}" for i, c in enumerate(columns, start=1))
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("tenant_id", "agency_id", "id"))
    await conn.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) "
        f"ON CONFLICT (tenant_id, id) DO UPDATE SET {updates}",
        [tuple(dumps(r[c]) if c in json_columns else r[c] for c in columns) for r in rows],
    )


class Projection(ABC):
    """A read model: tables (short name -> qualified name), their DDL, and a batch handler."""

    name: str
    version: int = 1
    tables: Mapping[str, str]
    # Whether the runner publishes the tenants each batch touched (live subscriptions).
    live: bool = False

    @abstractmethod
    def ddl(self, t: Mapping[str, str]) -> str:
        """CREATE statements for the tables, with names taken from `t` (live or next)."""

    @abstractmethod
    async def apply(self, conn: asyncpg.Connection, t: Mapping[str, str], batch: Sequence[Envelope]) -> set[str]:
        """Write the effects of a batch of events; returns the tenant scopes touched."""

    def create_sql(self, t: Mapping[str, str], owner: str) -> str:
        """The DDL plus row-level security on every read.* table."""
        parts = [self.ddl(t)]
        parts += [rls(name, owner) for name in t.values() if name.startswith("read.")]
        return "\n".join(parts)
