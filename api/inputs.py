"""What every operation's input must be before a resolver sees it: text PostgreSQL can store, instants the server
can compute with. Anything else is BAD_USER_INPUT, never an INTERNAL error or an event no read model can project."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dateutil.parser
import strawberry
from graphql import BREAK, DocumentNode, GraphQLError, StringValueNode, Visitor, visit
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.extensions import SchemaExtension

# Far enough from the ends of Python's calendar that a time zone, a span of a report or a series, or the bucket
# after it never leaves it (values out there overflow instead of meaning anything).
EARLIEST = dt.datetime(2, 1, 1)
LATEST = dt.datetime(9998, 12, 31, 23, 59, 59, 999999)


def parse_datetime(value: object) -> dt.datetime:
    """ISO 8601, as strawberry's own DateTime reads it, between the years 2 and 9998."""
    if not isinstance(value, str):
        raise StrawberryInputCoercionError(f'Value cannot represent a DateTime: "{value}". Expected a string.')
    try:
        parsed = dateutil.parser.isoparse(value)
        parsed.utcoffset()  # an offset of a day or more is refused here
    except (ValueError, OverflowError) as exc:
        raise StrawberryInputCoercionError(f'Value cannot represent a DateTime: "{value}". {exc}') from None
    if not EARLIEST <= parsed.replace(tzinfo=None) <= LATEST:
        raise StrawberryInputCoercionError(
            f'Value cannot represent a DateTime: "{value}". A DateTime lies between the years 2 and 9998.'
        )
    return parsed


DateTime = strawberry.scalar(
    name="DateTime",
    description="Date with time (isoformat), between the years 2 and 9998",
    serialize=dt.datetime.isoformat,
    parse_value=parse_datetime,
)


def storable(text: str) -> bool:
    """Whether PostgreSQL can store the text: no NUL character, no lone surrogate (which is no UTF-8)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return not storable(value)
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False


class _FindUnstorable(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> Any:
        if not storable(node.value):
            self.found = True
            return BREAK
        return None


def _document_unstorable(document: DocumentNode | None) -> bool:
    if document is None:
        return False
    finder = _FindUnstorable()
    visit(document, finder)
    return finder.found


class StorableText(SchemaExtension):
    """Text with a NUL character (or a lone surrogate) is refused before any resolver runs: PostgreSQL stores no
    such text, so it would fail a query, or worse, sit in an event that stops every read model projecting it."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        if _unstorable(ctx.variables) or _document_unstorable(ctx.graphql_document):
            raise GraphQLError(
                "text must not contain the NUL character (\\u0000) or unpaired surrogates",
                extensions={"code": "BAD_USER_INPUT"},
            )
        yield


def instant(value: dt.datetime, timezone: str) -> dt.datetime:
    """The instant a DateTime argument of a tenant's field names: as is with an offset, else a wall-clock time of
    the tenant's time zone (as for scheduling and `asOf`), so that the two kinds compare."""
    from domain.scheduling import resolve

    return resolve(value, timezone)
