"""Verification of a tenant's hash chain against the events as stored, and against its signed checkpoints."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from projections.base import Envelope
from projections.checkpoints import BadCheckpoint, Checkpoint, Checkpoints, open_signed
from projections.history import GENESIS, chain


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked_events: int
    head_hash: str
    first_bad_position: int | None
    checkpoints_checked: int = 0
    # Why the checkpoints could not be checked (the chain result stands), or which one failed.
    checkpoint_error: str | None = None


@dataclass(frozen=True)
class CheckpointCheck:
    ok: bool
    checked: int
    first_bad_position: int | None
    problem: str | None


def verify_chain(events: Sequence[Any], history: Sequence[Any]) -> Verification:
    """Recompute the chain from the stored events and compare it, entry by entry, with the recorded one.

    `events` are the scope's stored events in position order; `history` the recorded chain in order.
    An altered event breaks its own hash; a deleted one leaves a recorded entry without its event.
    """
    covered = history[-1]["position"] if history else 0
    stored = [e for e in events if e["notification_id"] <= covered]
    previous = GENESIS
    checked = 0
    for index, entry in enumerate(history):
        event = stored[index] if index < len(stored) else None
        if event is None or event["notification_id"] != entry["position"]:
            return Verification(False, checked, previous, entry["position"])
        previous = chain(previous, Envelope.from_row(event).canonical())
        if previous != entry["hash"]:
            return Verification(False, checked, previous, entry["position"])
        checked += 1
    if len(stored) > len(history):
        return Verification(False, checked, previous, stored[len(history)]["notification_id"])
    return Verification(True, checked, previous, None)


def verify_checkpoints(
    documents: Sequence[str | bytes], history: Sequence[Any], *, tenant: str, public_key: bytes
) -> CheckpointCheck:
    """Check signed checkpoints against the recorded chain: each must verify and match the entry at its seq."""
    # A history cut short or rewritten (events and entries alike, so that the chain alone still holds) no longer
    # has the signed (position, hash) at the checkpoint's seq: the checkpoint's position is the first bad one known.
    signed: list[Checkpoint] = []
    for document in documents:
        try:
            checkpoint = open_signed(document, public_key)
        except BadCheckpoint as exc:
            return CheckpointCheck(False, 0, None, str(exc))
        if checkpoint.tenant != tenant:
            return CheckpointCheck(False, 0, None, f"the checkpoint at seq {checkpoint.seq} is another tenant's")
        signed.append(checkpoint)
    recorded = {entry["seq"]: entry for entry in history}
    checked = 0
    for checkpoint in sorted(signed, key=lambda c: c.seq):
        entry = recorded.get(checkpoint.seq)
        if entry is None or (entry["position"], entry["hash"]) != (checkpoint.position, checkpoint.hash):
            what = "is missing" if entry is None else "differs"
            problem = f"the history entry at seq {checkpoint.seq} (checkpointed {checkpoint.at}) {what}"
            return CheckpointCheck(False, checked, checkpoint.position, problem)
        checked += 1
    return CheckpointCheck(True, checked, None, None)


def combine(chain_result: Verification, check: CheckpointCheck) -> Verification:
    """One verdict from the chain and the checkpoints; the earliest bad position of the two."""
    bad = [p for p in (chain_result.first_bad_position, check.first_bad_position) if p is not None]
    return replace(
        chain_result,
        ok=chain_result.ok and check.ok,
        first_bad_position=min(bad) if bad else None,
        checkpoints_checked=check.checked,
        checkpoint_error=check.problem,
    )


async def verify_recorded(
    events: Sequence[Any], history: Sequence[Any], scope: str, checkpoints: Checkpoints | None
) -> Verification:
    """The chain, then the scope's checkpoints; without Redis the chain alone, saying so."""
    result = verify_chain(events, history)
    if checkpoints is None:
        return replace(result, checkpoint_error="no checkpoint store is configured")
    try:
        documents = await checkpoints.documents(scope)
    except (RedisError, OSError) as exc:
        return replace(result, checkpoint_error=f"checkpoints unavailable ({type(exc).__name__}: {exc})")
    check = verify_checkpoints(documents, history, tenant=scope, public_key=checkpoints.public_key)
    return combine(result, check)


async def verify_scope(
    conn: asyncpg.Connection, scope: str, *, as_app: bool, checkpoints: Checkpoints | None = None
) -> Verification:
    """Verify one tenant's chain (and its checkpoints when given); the app role reads events through the guard."""
    if as_app:
        events = await conn.fetch("SELECT * FROM parvis.scope_events($1)", scope)
    else:
        events = await conn.fetch(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM public.parvis_events "
            "WHERE originator_id >= $1 AND originator_id < $2 ORDER BY notification_id",
            scope + "/",
            scope + "0",
        )
    history = await conn.fetch("SELECT seq, position, hash FROM read.history WHERE tenant_id = $1 ORDER BY seq", scope)
    if checkpoints is None:
        return verify_chain(events, history)
    return await verify_recorded(events, history, scope, checkpoints)


@dataclass(frozen=True)
class ExportWindow:
    """The contiguous run of a scope's entries in a time window, and the chain hash just before it."""

    tenant: str
    previous_seq: int
    previous_position: int
    previous_hash: str
    last_seq: int

    @property
    def events(self) -> int:
        return self.last_seq - self.previous_seq

    def header(self) -> dict[str, Any]:
        """The export's first record: what a window is verified from."""
        return {
            "parvis_export": 1,
            "tenant": self.tenant,
            "previous_seq": self.previous_seq,
            "previous_position": self.previous_position,
            "previous_hash": self.previous_hash,
            "first_seq": self.previous_seq + 1,
            "last_seq": self.last_seq,
            "events": self.events,
        }


async def export_window(
    conn: asyncpg.Connection, scope: str, start: datetime | None, end: datetime | None
) -> ExportWindow:
    """From the first entry at or after `start` to the last before `end`, every entry between them."""
    # By seq rather than by time alone: timestamps of concurrent commits may interleave, and a window with a gap
    # in it could not be verified on its own.
    bounds = await conn.fetchrow(
        "SELECT min(seq) AS first, max(seq) AS last FROM read.history WHERE tenant_id = $1 "
        "AND ($2::timestamptz IS NULL OR occurred_at >= $2) AND ($3::timestamptz IS NULL OR occurred_at < $3)",
        scope,
        start,
        end,
    )
    if bounds is None or bounds["first"] is None:
        return ExportWindow(scope, 0, 0, GENESIS, 0)
    before = await conn.fetchrow(
        "SELECT position, hash FROM read.history WHERE tenant_id = $1 AND seq = $2", scope, bounds["first"] - 1
    )
    position, previous = (before["position"], before["hash"]) if before else (0, GENESIS)
    return ExportWindow(scope, bounds["first"] - 1, position, previous, bounds["last"])


_EXPORT_ROWS = """
SELECT h.*, e.notification_id, e.originator_id, e.originator_version, e.topic, e.state
FROM read.history h
LEFT JOIN public.parvis_events e ON e.notification_id = h.position AND e.originator_id = h.aggregate_id
WHERE h.tenant_id = $1 AND h.seq > $2 AND h.seq <= $3
ORDER BY h.seq
"""


async def export_entries(
    conn: asyncpg.Connection, window: ExportWindow, batch: int = 1000
) -> AsyncIterator[dict[str, Any]]:
    """The window's entries in order, each with the stored event's canonical bytes and the hash before it."""
    previous = window.previous_hash
    for low in range(window.previous_seq, window.last_seq, batch):
        for row in await conn.fetch(_EXPORT_ROWS, window.tenant, low, min(low + batch, window.last_seq)):
            # An event missing from the store has no bytes: the offline check names its line.
            canonical = Envelope.from_row(row).canonical() if row["notification_id"] is not None else None
            data = row["data"]
            yield {
                "seq": row["seq"],
                "position": row["position"],
                "occurred_at": row["occurred_at"].isoformat(),
                "type": row["type"],
                "aggregate_type": row["aggregate_type"],
                "aggregate_id": row["aggregate_id"],
                "version": row["version"],
                "actor": row["actor"],
                "actor_role": row["actor_role"],
                "on_behalf_of": row["on_behalf_of"],
                "reason": row["reason"],
                "correlation_id": row["correlation_id"],
                "causation_id": row["causation_id"],
                "data": json.loads(data) if isinstance(data, str) else data,
                "canonical": base64.b64encode(canonical).decode() if canonical is not None else None,
                "previous_hash": previous,
                "hash": row["hash"],
            }
            previous = row["hash"]
