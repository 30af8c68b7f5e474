"""Metrics read through the connectors: each post's counters as running totals, the account's followers as a level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fakes.bluesky import FakeBluesky
from tests.fakes.mastodon import FakeMastodon
from tests.integration.connector_support import CLOSED, failure
from workers.connectors.base import MEASURED_POSTS, ChannelRef, FailureKind, Published, VariantRef, measured
from workers.connectors.bluesky import BlueskyConnector
from workers.connectors.mastodon import MastodonConnector


def published(*posts: Published) -> list[tuple[str, datetime]]:
    """What the workers hand a connector: the external id and publication time of each post of the channel."""
    return [(p.external_id, p.published_at) for p in posts]


def post_row(external_id: str, at: datetime, **counts: int) -> dict[str, Any]:
    return {"scope": "POST", "external_id": external_id, **counts, "measured_at": at}


def measured_at(rows: list[dict[str, Any]], before: datetime) -> datetime:
    """The one instant of a pull, which every row carries, between `before` and now."""
    (at,) = {row["measured_at"] for row in rows}
    assert before <= at <= datetime.now(UTC)
    return at  # type: ignore[no-any-return]


# Which posts a pull reads


def test_a_pull_reads_the_newest_posts_of_the_last_thirty_days_oldest_first() -> None:
    # Given a post a day for sixty days, then more posts in the last hours than a pull reads
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    daily = [(f"d{i}", now - timedelta(days=i)) for i in range(1, 61)]
    burst = [(f"b{i}", now - timedelta(minutes=i)) for i in range(MEASURED_POSTS + 5)]
    # When the posts a pull reads are chosen
    # Then only those of the last thirty days are, oldest first, and at most the newest MEASURED_POSTS
    assert measured(daily, now) == [f"d{i}" for i in range(30, 0, -1)]
    assert measured(burst + daily, now) == [f"b{i}" for i in range(MEASURED_POSTS - 1, -1, -1)]


# Mastodon


def test_mastodon_metrics_are_each_statuss_counts_and_the_accounts_followers(
    mastodon: tuple[FakeMastodon, ChannelRef],
) -> None:
    # Given two statuses of ours, favourited, boosted and answered (a private answer is not counted), and followers
    fake, channel = mastodon
    connector = MastodonConnector()
    first = connector.publish(channel, VariantRef("Première"), "post-1/ch-m")
    second = connector.publish(channel, VariantRef("Deuxième"), "post-2/ch-m")
    for acct in ("alice@other.example", "bob", "carol@other.example"):
        fake.add_favourite(acct, first.external_id)
        fake.add_follower(acct)
    fake.add_reblog("bob", first.external_id)
    fake.add_reblog("dave@other.example", second.external_id)
    fake.add_reply("alice@other.example", "Bravo", in_reply_to=first.external_id)
    fake.add_reply("erin", "Merci", in_reply_to=first.external_id)
    fake.add_mention("carol", "En privé", visibility="direct", in_reply_to=first.external_id)
    before = datetime.now(UTC)
    # When the channel's metrics are fetched
    rows = connector.fetch_metrics(channel, published(first, second))
    # Then each status has a row with the instance's counts under Parvis' names, engagements their sum, and the
    # channel a row with its followers, all measured at one instant
    at = measured_at(rows, before)
    assert rows == [
        post_row(first.external_id, at, likes=3, shares=1, replies=2, engagements=6),
        post_row(second.external_id, at, likes=0, shares=1, replies=0, engagements=1),
        {"scope": "CHANNEL", "external_id": None, "followers": 3, "measured_at": at},
    ]
    # And those are the instance's own figures
    status = fake.statuses[first.external_id]
    assert (status["favourites_count"], status["reblogs_count"], status["replies_count"]) == (3, 1, 2)
    assert fake.followers == 3


def test_a_deleted_or_old_mastodon_status_has_no_row(mastodon: tuple[FakeMastodon, ChannelRef]) -> None:
    # Given a status deleted since, one published forty days ago, and a recent one with a favourite
    fake, channel = mastodon
    connector = MastodonConnector()
    gone, old, recent = (connector.publish(channel, VariantRef(f"n°{i}"), f"post-{i}/ch-m") for i in range(3))
    fake.delete_status(gone.external_id)
    fake.add_favourite("alice@other.example", recent.external_id)
    aged = Published(old.external_id, old.external_url, old.published_at - timedelta(days=40))
    # When the channel's metrics are fetched
    rows = connector.fetch_metrics(channel, published(gone, aged, recent))
    # Then only the recent status has a row, and the old one was not even asked for
    assert [(r["external_id"], r.get("likes")) for r in rows] == [(recent.external_id, 1), (None, None)]
    assert fake.status_reads == [gone.external_id, recent.external_id]


@pytest.mark.parametrize("endpoint", ["verify_credentials", "status"])
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, FailureKind.AUTH_EXPIRED),
        (403, FailureKind.AUTH_EXPIRED),
        (429, FailureKind.RATE_LIMITED),
        (500, FailureKind.NETWORK),
        (503, FailureKind.NETWORK),
    ],
)
def test_each_mastodon_metrics_error_maps_to_a_failure_kind(
    mastodon: tuple[FakeMastodon, ChannelRef], endpoint: str, status: int, kind: FailureKind
) -> None:
    # Given a status of ours, and an instance that refuses the next request for the account or a status
    fake, channel = mastodon
    ours = MastodonConnector().publish(channel, VariantRef("Bonjour"), "post-1/ch-m")
    fake.faults.fail_next(status, endpoint=endpoint, reset_in=60)
    # When the channel's metrics are fetched
    error = failure(lambda: MastodonConnector().fetch_metrics(channel, published(ours)))
    # Then the failure is typed, and a rate limit says when to retry
    assert (error.kind, error.transient) == (kind, kind in (FailureKind.RATE_LIMITED, FailureKind.NETWORK))
    if status == 429:
        assert 55 <= (error.retry_after or 0) <= 60


def test_a_wrong_mastodon_token_or_no_instance_fails_a_pull_typed(mastodon: tuple[FakeMastodon, ChannelRef]) -> None:
    _, channel = mastodon
    stale = ChannelRef(channel.id, channel.platform, channel.handle, {**channel.credentials, "access_token": "old"})
    gone = ChannelRef(channel.id, channel.platform, channel.handle, {"base_url": CLOSED, "access_token": "t"})
    assert failure(lambda: MastodonConnector().fetch_metrics(stale, [])).kind == FailureKind.AUTH_EXPIRED
    assert failure(lambda: MastodonConnector().fetch_metrics(gone, [])).kind == FailureKind.NETWORK


# Bluesky


def test_bluesky_metrics_are_each_posts_counts_and_the_profiles_followers(
    bluesky: tuple[FakeBluesky, ChannelRef],
) -> None:
    # Given two posts of ours, liked, reposted, replied to and quoted (a reply to a reply is not the post's), and
    # followers
    fake, channel = bluesky
    connector = BlueskyConnector()
    first = connector.publish(channel, VariantRef("Première"), "post-1/ch-b")
    second = connector.publish(channel, VariantRef("Deuxième"), "post-2/ch-b")
    for handle in ("alice.bsky.social", "bob.bsky.social"):
        fake.add_like(handle, first.external_id)
        fake.add_repost(handle, second.external_id)
        fake.add_follower(handle)
    fake.add_follower("carol.bsky.social")
    reply = fake.add_reply("carol.bsky.social", "Bravo", parent=first.external_id)
    fake.add_reply("dave.bsky.social", "+1", parent=reply["uri"], root=first.external_id)
    fake.add_quote("erin.bsky.social", "À voir", quoted=second.external_id)
    before = datetime.now(UTC)
    # When the channel's metrics are fetched
    rows = connector.fetch_metrics(channel, published(first, second))
    # Then each post has a row with the AppView's counts under Parvis' names, engagements their sum, and the
    # channel a row with its followers, all measured at one instant
    at = measured_at(rows, before)
    assert rows == [
        post_row(first.external_id, at, likes=2, shares=0, replies=1, quotes=0, engagements=3),
        post_row(second.external_id, at, likes=0, shares=2, replies=0, quotes=1, engagements=3),
        {"scope": "CHANNEL", "external_id": None, "followers": 3, "measured_at": at},
    ]
    # And those are the fake AppView's own figures
    rkey = first.external_id.rsplit("/", maxsplit=1)[-1]
    assert (fake.counts[rkey]["likeCount"], fake.counts[rkey]["replyCount"], fake.followers) == (2, 1, 3)


def test_bluesky_posts_are_read_twenty_five_at_a_time_and_a_deleted_one_has_no_row(
    bluesky: tuple[FakeBluesky, ChannelRef],
) -> None:
    # Given thirty posts of ours, the first one deleted since and the last one liked
    fake, channel = bluesky
    connector = BlueskyConnector()
    posts = [connector.publish(channel, VariantRef(f"n°{i}"), f"post-{i}/ch-b") for i in range(30)]
    fake.delete_post(posts[0].external_id)
    fake.add_like("alice.bsky.social", posts[-1].external_id)
    # When the channel's metrics are fetched
    rows = connector.fetch_metrics(channel, published(*posts))
    # Then the posts were asked for in two calls, and every post but the deleted one has a row
    assert [len(uris) for uris in fake.post_queries] == [25, 5]
    assert [r["external_id"] for r in rows] == [p.external_id for p in posts[1:]] + [None]
    assert rows[-2]["likes"] == 1


@pytest.mark.parametrize("endpoint", ["getProfile", "getPosts"])
@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (401, "AuthenticationRequired", FailureKind.AUTH_EXPIRED),
        (429, None, FailureKind.RATE_LIMITED),
        (500, None, FailureKind.NETWORK),
        (502, None, FailureKind.NETWORK),
    ],
)
def test_each_bluesky_metrics_error_maps_to_a_failure_kind(
    bluesky: tuple[FakeBluesky, ChannelRef], endpoint: str, status: int, error: str | None, kind: FailureKind
) -> None:
    # Given a post of ours, and a PDS that refuses the next profile or posts query of a fresh session
    fake, channel = bluesky
    ours = BlueskyConnector().publish(channel, VariantRef("Bonjour"), "post-1/ch-b")
    fake.faults.fail_next(status, endpoint=endpoint, error=error, reset_in=60)
    # When the channel's metrics are fetched
    failed = failure(lambda: BlueskyConnector().fetch_metrics(channel, published(ours)))
    # Then the failure is typed, and a rate limit says when to retry
    assert (failed.kind, failed.transient) == (kind, kind in (FailureKind.RATE_LIMITED, FailureKind.NETWORK))
    if status == 429:
        assert 55 <= (failed.retry_after or 0) <= 61


def test_an_expired_bluesky_session_is_renewed_once_while_pulling(bluesky: tuple[FakeBluesky, ChannelRef]) -> None:
    # Given a connector whose cached session has expired since it published
    fake, channel = bluesky
    connector = BlueskyConnector()
    ours = connector.publish(channel, VariantRef("Bonjour"), "post-1/ch-b")
    fake.expire_sessions()
    fake.add_follower("alice.bsky.social")
    # When it fetches the metrics
    rows = connector.fetch_metrics(channel, published(ours))
    # Then it logged in once more and read them
    assert [r["external_id"] for r in rows] == [ours.external_id, None]
    assert rows[-1]["followers"] == 1
    assert fake.logins == 2
