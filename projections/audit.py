"""Verification of a tenant's hash chain against the events as stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from projections.base import Envelope
from projections.history import GENESIS, chain


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked_events: int
    head_hash: str
    first_bad_position: int | None


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


async def verify_scope(conn: asyncpg.Connection, scope: str, *, as_app: bool) -> Verification:
    """Verify one tenant's chain; the app role reads events through the guarded function."""
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
    return verify_chain(events, history)
