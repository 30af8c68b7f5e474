"""Local times in a tenant's time zone across daylight-saving changes (domain/scheduling.py), and a post scheduled
at such a local time through the application service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.app import Parvis
from domain.post import Variant
from domain.scheduling import is_ambiguous, is_nonexistent, local, resolve

ZONES = ("Europe/Paris", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe")
HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------------- an oracle independent of fold


def offset_at(instant: datetime, tz: str) -> timedelta:
    """The UTC offset of a zone at an instant (converting from UTC is never ambiguous)."""
    offset = instant.astimezone(ZoneInfo(tz)).utcoffset()
    assert offset is not None
    return offset


def readings(wall: datetime, tz: str) -> list[datetime]:
    """Every instant whose wall-clock reading in the zone is `wall`, earliest first."""
    around = wall.replace(tzinfo=UTC)
    offsets = {offset_at(around + k * HOUR, tz) for k in range(-30, 31)}
    instants = {around - o for o in offsets}
    return sorted(i for i in instants if local(i, tz).replace(tzinfo=None) == wall)


@cache
def transitions(tz: str, year: int) -> tuple[tuple[datetime, timedelta, timedelta], ...]:
    """(instant, offset before, offset after) of each change of offset in a year, found hour by hour."""
    found = []
    start = utc(year, 1, 1)
    for h in range(366 * 24):
        before, after = offset_at(start + h * HOUR, tz), offset_at(start + (h + 1) * HOUR, tz)
        if before != after:
            # Changes happen on the hour or half-hour: find the minute.
            at = next(start + h * HOUR + m * timedelta(minutes=1) for m in range(1, 61)
                      if offset_at(start + h * HOUR + m * timedelta(minutes=1), tz) == after)
            found.append((at, before, after))
    return tuple(found)


@st.composite
def near_a_change(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and a wall-clock time within three hours of one of its daylight-saving changes."""
    tz = draw(st.sampled_from(ZONES))
    changes = transitions(tz, draw(st.integers(2024, 2027)))
    at, before, _ = draw(st.sampled_from(changes))
    wall = (at + before).replace(tzinfo=None) + timedelta(minutes=draw(st.integers(-180, 180)))
    return tz, wall


# ---------------------------------------------------------------------- examples, zone by zone

SPRING_FORWARD = [
    # zone, a wall time in the skipped hour, the instant it means (moved forward by the jump)
    ("Europe/Paris", datetime(2025, 3, 30, 2, 30), utc(2025, 3, 30, 1, 30)),  # 03:30 CEST
    ("America/New_York", datetime(2025, 3, 9, 2, 30), utc(2025, 3, 9, 7, 30)),  # 03:30 EDT
    ("Australia/Sydney", datetime(2025, 10, 5, 2, 30), utc(2025, 10, 4, 16, 30)),  # 03:30 AEDT
    ("Australia/Lord_Howe", datetime(2025, 10, 5, 2, 15), utc(2025, 10, 4, 15, 45)),  # a 30-minute jump: 02:45
]
FALL_BACK = [
    # zone, a wall time that occurs twice, its first occurrence (summer time)
    ("Europe/Paris", datetime(2025, 10, 26, 2, 30), utc(2025, 10, 26, 0, 30)),  # 02:30 CEST, not CET
    ("America/New_York", datetime(2025, 11, 2, 1, 30), utc(2025, 11, 2, 5, 30)),  # 01:30 EDT, not EST
    ("Australia/Sydney", datetime(2025, 4, 6, 2, 30), utc(2025, 4, 5, 15, 30)),  # 02:30 AEDT, not AEST
]


@pytest.mark.parametrize(("tz", "wall", "instant"), SPRING_FORWARD)
def test_a_local_time_in_the_skipped_hour_moves_forward_by_the_jump(tz: str, wall: datetime, instant: datetime) -> None:
    # Given a wall-clock time that the spring-forward change skips
    assert is_nonexistent(wall, tz)
    assert not is_ambiguous(wall, tz)
    # When it is resolved in that zone
    resolved = resolve(wall, tz)
    # Then it is the instant the documentation promises, which reads later on the clock by the length of the jump
    assert resolved == instant
    jump = offset_at(instant + 12 * HOUR, tz) - offset_at(instant - 12 * HOUR, tz)
    assert local(resolved, tz).replace(tzinfo=None) == wall + jump


@pytest.mark.parametrize(("tz", "wall", "instant"), FALL_BACK)
def test_an_ambiguous_local_time_takes_its_first_occurrence(tz: str, wall: datetime, instant: datetime) -> None:
    # Given a wall-clock time that the fall-back change repeats
    assert is_ambiguous(wall, tz)
    assert not is_nonexistent(wall, tz)
    first, second = readings(wall, tz)
    # When it is resolved in that zone
    resolved = resolve(wall, tz)
    # Then it is the first of its two occurrences, still in summer time
    assert resolved == first == instant
    assert second - first == offset_at(first, tz) - offset_at(second, tz)


@pytest.mark.parametrize(
    ("tz", "wall", "instant"),
    [
        ("Europe/Paris", datetime(2025, 7, 14, 9, 0), utc(2025, 7, 14, 7, 0)),
        ("America/New_York", datetime(2025, 1, 20, 12, 0), utc(2025, 1, 20, 17, 0)),
        ("Australia/Sydney", datetime(2025, 1, 26, 8, 0), utc(2025, 1, 25, 21, 0)),
        ("Australia/Sydney", datetime(2025, 7, 1, 8, 0), utc(2025, 6, 30, 22, 0)),
    ],
)
def test_an_ordinary_local_time_is_neither_skipped_nor_repeated(tz: str, wall: datetime, instant: datetime) -> None:
    # Given a wall-clock time far from any change
    # When it is examined and resolved
    # Then it has one meaning, with the offset of its season
    assert not is_nonexistent(wall, tz)
    assert not is_ambiguous(wall, tz)
    assert resolve(wall, tz) == instant


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize(
    "given_time",
    [
        datetime(2025, 3, 30, 2, 30, tzinfo=timezone(timedelta(hours=1))),
        datetime(2025, 10, 26, 2, 30, tzinfo=timezone(timedelta(hours=1))),
        datetime(2025, 11, 2, 1, 30, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2025, 4, 6, 2, 30, tzinfo=timezone(timedelta(hours=10))),  # the second occurrence, in Sydney
    ],
)
def test_a_time_with_an_offset_is_taken_as_is_in_any_zone(tz: str, given_time: datetime) -> None:
    # Given a time that carries its own offset (wall times that are skipped or repeated in some zones)
    # When it is examined and resolved in a tenant's zone
    resolved = resolve(given_time, tz)
    # Then it is the instant it names, and neither skipped nor repeated: it needs no interpretation
    assert resolved == given_time
    assert resolved.utcoffset() == timedelta(0)
    assert not is_nonexistent(given_time, tz)
    assert not is_ambiguous(given_time, tz)


# ---------------------------------------------------------------------- properties near every change


@settings(max_examples=300, deadline=None, database=None)
@given(near_a_change())
def test_near_a_change_the_two_predicates_tell_the_cases_and_resolve_follows_the_rule(
    case: tuple[str, datetime],
) -> None:
    # Given a wall-clock time near a daylight-saving change, and every instant that reads so on the clock
    tz, wall = case
    instants = readings(wall, tz)
    # When it is examined and resolved
    resolved = resolve(wall, tz)
    # Then the predicates match the count of such instants, and the instant chosen follows the documented rule
    assert is_nonexistent(wall, tz) == (len(instants) == 0)
    assert is_ambiguous(wall, tz) == (len(instants) == 2)
    if instants:
        assert resolved == instants[0]
    else:
        jump = offset_at(resolved + 12 * HOUR, tz) - offset_at(resolved - 12 * HOUR, tz)
        assert jump > timedelta(0)
        assert local(resolved, tz).replace(tzinfo=None) == wall + jump


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.sampled_from(ZONES),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31)),
)
def test_a_local_time_that_exists_reads_back_unchanged(tz: str, wall: datetime) -> None:
    # Given any wall-clock time that is not skipped
    if is_nonexistent(wall, tz):
        return
    # When it is resolved and read back in the same zone
    back = local(resolve(wall, tz), tz)
    # Then the clock shows the same time, and the instant is in UTC
    assert back.replace(tzinfo=None) == wall
    assert resolve(wall, tz).tzinfo is UTC


# ---------------------------------------------------------------------- through the application service


class FakeSecrets:
    def seal(self, plaintext: str) -> str:
        return "sealed:" + plaintext[::-1]

    def hash_password(self, password: str) -> str:
        return "hashed"


@pytest.fixture
def app() -> Parvis:
    return Parvis(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, secrets=FakeSecrets(),
                 clock=lambda: utc(2025, 1, 1))


def approved_post(app: Parvis, tz: str) -> str:
    """A post of a new tenant in that zone, approved at once (the tenant requires no approval)."""
    agency_key = app.register_agency("Agence", "admin@agence.test", "correct horse battery").value[0]
    tenant_key = app.create_tenant(agency_key, "Client", "NGO", tz).value
    channel_id = app.connect_channel(tenant_key, "MASTODON", "@client", None, None).value
    app.set_approval_policy(tenant_key, 0, False, None)
    post_id = app.draft_post(tenant_key, "cm-1", [Variant(channel_id, "Bonjour")], None, None, None, "COLD").value
    app.submit_post(post_id)
    return post_id


@pytest.mark.parametrize(("tz", "wall", "instant"), SPRING_FORWARD + FALL_BACK)
def test_a_post_scheduled_at_a_local_time_across_a_change_lands_on_the_documented_instant(
    app: Parvis, tz: str, wall: datetime, instant: datetime
) -> None:
    # Given an approved post of a tenant in that zone
    post_id = approved_post(app, tz)
    # When it is scheduled at a wall-clock time that the change skips or repeats
    app.schedule_post(post_id, wall)
    # Then it is scheduled at the instant the scheduling rules give
    post = app.post(post_id)
    assert post.status == "SCHEDULED"
    assert post.scheduled_at == instant


def test_a_post_scheduled_with_an_offset_lands_on_that_instant_whatever_the_tenant_zone(app: Parvis) -> None:
    # Given an approved post of a tenant in New York
    post_id = approved_post(app, "America/New_York")
    # When it is scheduled at a Paris time given with its offset
    app.schedule_post(post_id, datetime(2025, 3, 30, 3, 30, tzinfo=ZoneInfo("Europe/Paris")))
    # Then the offset given wins over the tenant's zone
    assert app.post(post_id).scheduled_at == utc(2025, 3, 30, 1, 30)
