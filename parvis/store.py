"""The event store's recorder: eventsourcing's PostgreSQL recorder, plus idempotency receipts in its transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import Cursor
from psycopg.rows import DictRow

from domain.context import Receipt, receipt_json

_RECORD = (
    "UPDATE parvis.idempotency SET result = %s::jsonb, position = %s "
    "WHERE principal = %s AND key = %s AND result IS NULL"
)


class ReceiptRecorder(PostgresApplicationRecorder):
    """Stores a command's result under its idempotency key in the transaction that stores the command's events.

    Without this, a process that died between the two would leave the key without a result: the retry, once the
    reservation lapsed, would run the command a second time (a second post drafted)."""

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int]:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        receipt: tuple[Receipt, Any] | None = kwargs.get("receipt")
        if receipt is not None and ids:
            key, value = receipt
            curs.execute(_RECORD, (receipt_json(value), max(ids), key.principal, key.key))
        return ids
