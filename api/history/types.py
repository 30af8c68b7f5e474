"""GraphQL types of the audit history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from api import ids
from api.access import inherit_permissions
from api.directory.types import Role
from api.pagination import PageInfo
from domain.roles import Role as DomainRole


@inherit_permissions
@strawberry.type
class HistoryEvent:
    position: str
    occurred_at: datetime
    type: str
    aggregate_type: str
    aggregate_id: strawberry.ID
    version: int
    actor: str
    actor_role: Role | None  # type: ignore[valid-type]
    on_behalf_of: strawberry.ID | None
    reason: str | None
    correlation_id: str | None
    data: JSON
    hash: str

    @classmethod
    def from_row(cls, row: Any) -> HistoryEvent:
        return cls(
            position=str(row["position"]),
            occurred_at=row["occurred_at"],
            type=row["type"],
            aggregate_type=row["aggregate_type"],
            aggregate_id=strawberry.ID(ids.encode(row["aggregate_type"], row["aggregate_id"])),
            version=row["version"],
            actor=row["actor"],
            actor_role=DomainRole(row["actor_role"]) if row["actor_role"] else None,
            on_behalf_of=strawberry.ID(ids.encode("Tenant", row["on_behalf_of"])) if row["on_behalf_of"] else None,
            reason=row["reason"],
            correlation_id=row["correlation_id"],
            data=_json(row["data"]),
            hash=row["hash"],
        )


def _json(value: Any) -> Any:
    import json

    return json.loads(value) if isinstance(value, str) else value


@inherit_permissions
@strawberry.type
class HistoryEdge:
    cursor: str
    node: HistoryEvent


@inherit_permissions
@strawberry.type
class HistoryConnection:
    edges: list[HistoryEdge]
    page_info: PageInfo


@strawberry.input
class HistoryFilter:
    types: list[str] | None = None
    aggregate_id: strawberry.ID | None = None
    actor: str | None = None
    from_: datetime | None = strawberry.field(default=None, name="from")
    to: datetime | None = None


@inherit_permissions
@strawberry.type
class HistoryVerification:
    ok: bool
    checked_events: int
    head_hash: str
    first_bad_position: str | None
    checkpoints_checked: int = strawberry.field(
        description="Signed checkpoints (kept in Redis) found intact in the recorded history."
    )
    checkpoint_error: str | None = strawberry.field(
        description="Why the checkpoints could not be checked (then `ok` covers the chain alone), "
        "or which one failed."
    )
