"""Relay connections: opaque cursors and the page-size cap."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

import strawberry

from api.access import inherit_permissions
from api.errors import BadInput


@inherit_permissions
@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def page_size(first: int | None, cap: int = 100) -> int:
    """`first`, checked: at most 100, at least 0."""
    if first is None:
        return 20
    if first < 0 or first > cap:
        raise BadInput(f"first must be between 0 and {cap}")
    return first


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key), default=str).encode()).decode()


def decode_cursor(cursor: str | None, shape: str = "key") -> list[Any] | None:
    """The key a cursor of `encode_cursor` holds, checked (anything else is BAD_USER_INPUT, never a query error):
    `key` is [an instant, an id] (the instant as a datetime, for `$n::timestamptz`), `seq` is [a position]."""
    if cursor is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if shape == "seq":
            [seq] = value
            if type(seq) is not int or not 0 <= seq < 2**63:
                raise ValueError("not a position")
            return [seq]
        at, key = value
        instant = datetime.fromisoformat(at)
        if not isinstance(key, str) or "\x00" in key or instant.utcoffset() is None:
            raise ValueError("not a key")
        return [instant.astimezone(UTC), key]
    except (binascii.Error, ValueError, TypeError, OverflowError):
        raise BadInput("after is not a valid cursor") from None


class Keyset:
    """Keyset pagination of a read-model table over (an instant column, an id column): the page after the
    cursor, and whether more follow. Cursors are `encode_cursor(instant, id)`."""

    def __init__(self, table: str, *, at: str = "created_at", id_column: str = "id", descending: bool = False) -> None:
        self.table, self.at, self.id, self.descending = table, at, id_column, descending

    def cursor(self, row: Any) -> str:
        return encode_cursor(row[self.at].isoformat(), row[self.id])

    async def page(
        self, db: Any, where: list[str], args: list[Any], first: int | None, after: str | None
    ) -> tuple[list[Any], PageInfo]:
        """Rows of the page (`where` and `args` are the caller's filters, numbered $1...) and its PageInfo."""
        limit = page_size(first)
        cursor = decode_cursor(after)
        where, args = list(where), list(args)
        if cursor:
            args += cursor
            where.append(f"({self.at}, {self.id}) {'<' if self.descending else '>'} "
                         f"(${len(args) - 1}::timestamptz, ${len(args)})")
        args.append(limit + 1)
        order = " DESC" if self.descending else ""
        rows = await db.fetch(
            f"SELECT * FROM {self.table} WHERE {' AND '.join(where)} "
            f"ORDER BY {self.at}{order}, {self.id}{order} LIMIT ${len(args)}", *args,
        )
        page = rows[:limit]
        return page, PageInfo(has_next_page=len(rows) > limit, end_cursor=self.cursor(page[-1]) if page else None)
