"""Local times in a tenant's time zone, including the two daylight-saving cases.

- A local time that does not exist (the clock jumps from 02:00 to 03:00) is moved forward by the
  length of the jump: 02:30 on that day becomes 03:30.
- A local time that occurs twice (the clock goes back from 03:00 to 02:00) is taken at its first
  occurrence, the one before the change (summer time).
A time given with an offset is an instant and needs no interpretation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def resolve(value: datetime, tz: str) -> datetime:
    """The instant meant by `value`: as is when it has an offset, else as a local time of `tz`."""
    if has_offset(value):
        return value.astimezone(UTC)
    # fold=0 takes the offset in force before a change: for a time that occurs twice that is its first
    # occurrence; for a time in a gap it is the offset before the jump, which lands after the jump.
    return value.replace(tzinfo=ZoneInfo(tz), fold=0).astimezone(UTC)


def has_offset(value: datetime) -> bool:
    """Whether a time names an instant (it carries an offset) rather than a wall-clock reading."""
    return value.tzinfo is not None and value.utcoffset() is not None


def is_nonexistent(value: datetime, tz: str) -> bool:
    """Whether a local time falls in the hour skipped when the clock jumps forward."""
    if has_offset(value):
        return False  # an instant is never skipped
    zone = ZoneInfo(tz)
    return value.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != value


def is_ambiguous(value: datetime, tz: str) -> bool:
    """Whether a local time occurs twice (the hour repeated when the clock goes back)."""
    if has_offset(value):
        return False  # an instant happens once
    zone = ZoneInfo(tz)
    differs = value.replace(tzinfo=zone, fold=0).utcoffset() != value.replace(tzinfo=zone, fold=1).utcoffset()
    return differs and not is_nonexistent(value, tz)


def local(instant: datetime, tz: str) -> datetime:
    """The wall-clock time of an instant in a time zone."""
    return instant.astimezone(ZoneInfo(tz))

