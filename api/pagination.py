"""Relay connections: opaque cursors and the page-size cap."""

from __future__ import annotations

import base64
import binascii
import json
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


def decode_cursor(cursor: str | None) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError):
        raise BadInput("after is not a valid cursor") from None
    if not isinstance(value, list):
        raise BadInput("after is not a valid cursor")
    return value
