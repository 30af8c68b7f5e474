"""Opaque global ids: base64url of '<Type>:<raw id>'."""

from __future__ import annotations

import base64
import binascii
import re

from api.errors import BadInput, NotFoundError

_RAW = re.compile(r"^[0-9a-f]{32}(/[a-z]+/[0-9a-f]{32})?$")


def encode(type_name: str, raw: str) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{raw}".encode()).decode().rstrip("=")


def decode(value: str, *expected: str, field: str = "id") -> tuple[str, str]:
    """(type, raw id) of a global id; a malformed one is BAD_USER_INPUT, one of another type NOT_FOUND."""
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        type_name, raw = text.split(":", 1)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadInput(f"{field} is not a valid id") from None
    if not _RAW.match(raw):
        raise BadInput(f"{field} is not a valid id")
    if expected and type_name not in expected:
        raise NotFoundError(f"{field} does not name a {' or '.join(expected)}")
    return type_name, raw


def raw(value: str, type_name: str, field: str = "id") -> str:
    return decode(value, type_name, field=field)[1]


def scope(raw_id: str) -> str:
    """The tenant (or agency) key of a raw id."""
    return raw_id.split("/", 1)[0]
