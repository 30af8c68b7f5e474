"""Value checks shared by aggregates: each refusal names the field and the reason."""

from __future__ import annotations

import re
from enum import Enum
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.errors import InvalidInput

E = TypeVar("E", bound=Enum)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")


def text(value: str | None, field: str, *, max_len: int = 200, required: bool = True) -> str | None:
    """A trimmed text of bounded length; empty is refused when required."""
    if value is None:
        if required:
            raise InvalidInput(f"{field} is required", field)
        return None
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{field} must not be empty", field)
    if len(value) > max_len:
        raise InvalidInput(f"{field} must be at most {max_len} characters", field)
    return value


def required_text(value: str | None, field: str, *, max_len: int = 200) -> str:
    """A trimmed, non-empty text of bounded length."""
    result = text(value, field, max_len=max_len, required=True)
    assert result is not None
    return result


def timezone(value: str, field: str = "timezone") -> str:
    """An IANA time zone name known to the tz database."""
    if not value or ("/" not in value and value != "UTC"):
        raise InvalidInput(f"{field} must be an IANA time zone such as Europe/Paris", field)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{field} '{value}' is not a known IANA time zone", field) from None
    return value


def locale(value: str, field: str = "locale") -> str:
    """A BCP 47 language tag of the form 'fr' or 'fr-FR'."""
    if not _LOCALE.match(value or ""):
        raise InvalidInput(f"{field} must look like 'fr-FR'", field)
    return value


def email(value: str, field: str = "email") -> str:
    """A plausible e-mail address, lower-cased."""
    value = (value or "").strip().lower()
    if not _EMAIL.match(value) or len(value) > 254:
        raise InvalidInput(f"{field} is not a valid e-mail address", field)
    return value


def choice(value: str, enum: type[E], field: str) -> E:
    """A member of an enumeration, by name."""
    try:
        return enum[value]
    except KeyError:
        allowed = ", ".join(m.name for m in enum)
        raise InvalidInput(f"{field} must be one of {allowed}", field) from None


def int_range(value: int | None, field: str, lo: int, hi: int) -> int | None:
    """An optional integer within [lo, hi]."""
    if value is not None and not lo <= value <= hi:
        raise InvalidInput(f"{field} must be between {lo} and {hi}", field)
    return value
