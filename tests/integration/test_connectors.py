"""Platform connectors against local fakes of the platforms' APIs: publishing, idempotency, typed failures, health."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import serve
from tests.fakes.bluesky import TID, FakeBluesky
from tests.fakes.mastodon import FakeMastodon
from tests.fakes.webhook import FakeWebhook
from tests.integration.connector_support import CLOSED, POST, failure
from workers.connectors import sandbox
from workers.connectors.base import ChannelRef, FailureKind, Health, VariantRef, parse_retry_after
from workers.connectors.bluesky import BlueskyConnector, graphemes, record_key
from workers.connectors.mastodon import MastodonConnector
from workers.connectors.registry import connectors
from workers.connectors.sandbox import SandboxConnector, interactions_for, metrics_for
from workers.connectors.webhook import WebhookConnector

# Mastodon


def test_a_mastodon_status_is_published_with_its_id_and_url(mastodon: tuple[FakeMastodon, ChannelRef]) -> None:
    # Given an instance and a connected account
    fake, channel = mastodon
    # When a post is published
    published = MastodonConnector().publish(channel, POST, "post-1/ch-m")
    # Then the instance holds one public status, and the connector returns its id, URL and time
    status = fake.statuses[published.external_id]
    assert status["visibility"] == "public"
    assert "Notre nouvelle collection" in status["content"]
    assert published.external_url == status["url"]
    assert published.published_at.tzinfo is not None


def test_media_urls_are_appended_to_a_mastodon_status(mastodon: tuple[FakeMastodon, ChannelRef]) -> None:
    fake, channel = mastodon
    variant = VariantRef("Regardez !", ("https://cdn.example/a.jpg", "https://cdn.example/b.jpg"))
    published = MastodonConnector().publish(channel, variant, "post-2/ch-m")
    assert "https://cdn.example/a.jpg\nhttps://cdn.example/b.jpg" in fake.statuses[published.external_id]["content"]


def test_publishing_twice_with_the_same_key_makes_one_mastodon_status(
    mastodon: tuple[FakeMastodon, ChannelRef],
) -> None:
    # Given a post published once
    fake, channel = mastodon
    first = MastodonConnector().publish(channel, POST, "post-1/ch-m")
    # When it is published again with the same key (a retry)
    again = MastodonConnector().publish(channel, POST, "post-1/ch-m")
    # Then the instance answered with the same status and made only one
    assert again.external_id == first.external_id
    assert fake.requests["post-1/ch-m"] == 2
    assert fake.created == 1


def test_a_mastodon_timeout_is_transient_and_its_retry_makes_no_second_status(
    mastodon: tuple[FakeMastodon, ChannelRef],
) -> None:
    # Given an instance that makes the status but answers too late
    fake, channel = mastodon
    fake.faults.hang_next(1.0, endpoint="statuses")
    connector = MastodonConnector(timeout=0.3)
    # When the connector gives up waiting, then retries
    error = failure(lambda: connector.publish(channel, POST, "post-1/ch-m"))
    published = connector.publish(channel, POST, "post-1/ch-m")
    # Then the first attempt was a transient network failure and the retry found the status already made
    assert (error.kind, error.transient) == (FailureKind.NETWORK, True)
    assert fake.created == 1
    assert published.external_id in fake.statuses


@pytest.mark.parametrize(
    ("status", "kind", "transient"),
    [
        (401, FailureKind.AUTH_EXPIRED, False),
        (403, FailureKind.AUTH_EXPIRED, False),
        (422, FailureKind.REJECTED_CONTENT, False),
        (429, FailureKind.RATE_LIMITED, True),
        (500, FailureKind.NETWORK, True),
        (503, FailureKind.NETWORK, True),
        (404, FailureKind.UNKNOWN, False),
    ],
)
def test_each_mastodon_error_status_maps_to_a_failure_kind(
    mastodon: tuple[FakeMastodon, ChannelRef], status: int, kind: FailureKind, transient: bool
) -> None:
    # Given an instance that refuses the next status with this HTTP status
    fake, channel = mastodon
    fake.faults.fail_next(status, endpoint="statuses")
    # When a post is published
    error = failure(lambda: MastodonConnector().publish(channel, POST, "post-1/ch-m"))
    # Then the failure is typed, and nothing was posted
    assert (error.kind, error.transient) == (kind, transient)
    assert fake.created == 0


def test_a_mastodon_rate_limit_says_when_to_retry(mastodon: tuple[FakeMastodon, ChannelRef]) -> None:
    fake, channel = mastodon
    fake.faults.fail_next(429, reset_in=120)
    error = failure(lambda: MastodonConnector().publish(channel, POST, "post-1/ch-m"))
    assert error.retry_after is not None
    assert 115 <= error.retry_after <= 120


def test_a_mastodon_refusal_carries_the_instances_explanation(mastodon: tuple[FakeMastodon, ChannelRef]) -> None:
    # Given a status longer than the instance allows
    _, channel = mastodon
    # When it is published
    error = failure(lambda: MastodonConnector().publish(channel, VariantRef("x" * 501), "post-1/ch-m"))
    # Then it is rejected with the API's own message
    assert error.kind == FailureKind.REJECTED_CONTENT
    assert "character limit of 500" in error.message


def test_a_wrong_mastodon_token_is_expired_auth(mastodon: tuple[FakeMastodon, ChannelRef]) -> None:
    fake, channel = mastodon
    stale = ChannelRef(channel.id, channel.platform, channel.handle, {**channel.credentials, "access_token": "old"})
    error = failure(lambda: MastodonConnector().publish(stale, POST, "post-1/ch-m"))
    assert error.kind == FailureKind.AUTH_EXPIRED
    assert "old" not in error.message
    assert fake.created == 0


@pytest.mark.parametrize(("status", "health"), [(None, Health.OK), (401, Health.EXPIRED), (403, Health.REVOKED)])
def test_a_mastodon_check_maps_verify_credentials_to_health(
    mastodon: tuple[FakeMastodon, ChannelRef], status: int | None, health: Health
) -> None:
    fake, channel = mastodon
    if status:
        fake.faults.fail_next(status, endpoint="verify_credentials")
    assert MastodonConnector().check(channel).health == health


def test_an_unreachable_mastodon_instance_is_a_transient_network_failure() -> None:
    channel = ChannelRef("ch-m", "MASTODON", "@x", {"base_url": CLOSED, "access_token": "t"})
    assert failure(lambda: MastodonConnector().check(channel)).kind == FailureKind.NETWORK
    assert failure(lambda: MastodonConnector().publish(channel, POST, "k")).transient


# Bluesky


def test_a_bluesky_post_is_published_with_its_at_uri_and_url(bluesky: tuple[FakeBluesky, ChannelRef]) -> None:
    # Given a PDS and an account with an app password
    fake, channel = bluesky
    # When a post is published
    published = BlueskyConnector().publish(channel, POST, "post-1/ch-b")
    # Then the PDS holds one post record under the key derived from the idempotency key
    rkey = record_key("post-1/ch-b")
    assert fake.records[rkey]["text"] == POST.body
    assert published.external_id == f"at://{fake.did}/app.bsky.feed.post/{rkey}"
    assert published.external_url == f"https://bsky.app/profile/{fake.handle}/post/{rkey}"


def test_media_urls_become_links_in_a_bluesky_post(bluesky: tuple[FakeBluesky, ChannelRef]) -> None:
    fake, channel = bluesky
    variant = VariantRef("Été ☀️ à Nîmes", ("https://cdn.example/a.jpg",))
    BlueskyConnector().publish(channel, variant, "post-2/ch-b")
    record = fake.records[record_key("post-2/ch-b")]
    index = record["facets"][0]["index"]  # facets count UTF-8 bytes, not characters
    assert record["text"].encode()[index["byteStart"] : index["byteEnd"]] == b"https://cdn.example/a.jpg"


def test_publishing_twice_with_the_same_key_makes_one_bluesky_post(bluesky: tuple[FakeBluesky, ChannelRef]) -> None:
    # Given a post published once
    fake, channel = bluesky
    first = BlueskyConnector().publish(channel, POST, "post-1/ch-b")
    # When it is published again with the same key, by another worker process
    again = BlueskyConnector().publish(channel, POST, "post-1/ch-b")
    # Then the PDS refused the existing key, the connector fetched the record, and there is one post
    assert again == first
    assert fake.requests[record_key("post-1/ch-b")] == 2
    assert fake.created == 1


def test_a_bluesky_timeout_is_transient_and_its_retry_makes_no_second_post(
    bluesky: tuple[FakeBluesky, ChannelRef],
) -> None:
    fake, channel = bluesky
    fake.faults.hang_next(1.0, endpoint="createRecord")
    connector = BlueskyConnector(timeout=0.3)
    assert failure(lambda: connector.publish(channel, POST, "post-1/ch-b")).kind == FailureKind.NETWORK
    published = connector.publish(channel, POST, "post-1/ch-b")
    assert fake.created == 1
    assert published.external_id.endswith(record_key("post-1/ch-b"))


def test_a_bluesky_post_over_300_graphemes_is_rejected_before_any_request(
    bluesky: tuple[FakeBluesky, ChannelRef],
) -> None:
    fake, channel = bluesky
    error = failure(lambda: BlueskyConnector().publish(channel, VariantRef("a" * 301), "post-1/ch-b"))
    assert error.kind == FailureKind.REJECTED_CONTENT
    assert (fake.logins, sum(fake.requests.values())) == (0, 0)


def test_graphemes_are_counted_as_people_see_them() -> None:
    assert graphemes("e\u0301té") == 3  # a combining accent belongs to its letter
    assert graphemes("👍🏽" * 300) == 300  # skin tones belong to their emoji
    assert graphemes("🇫🇷🇧🇪") == 2  # regional indicators pair into flags
    assert graphemes("👨‍👩‍👧") == 1  # a family joined by zero-width joiners
    assert graphemes("a\r\nb") == 3


def test_a_bluesky_record_key_is_a_stable_tid() -> None:
    assert TID.match(record_key("post-1/ch-b"))
    assert record_key("post-1/ch-b") == record_key("post-1/ch-b") != record_key("post-2/ch-b")


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (400, "ExpiredToken", FailureKind.AUTH_EXPIRED),
        (400, "InvalidToken", FailureKind.AUTH_EXPIRED),
        (401, "AuthenticationRequired", FailureKind.AUTH_EXPIRED),
        (400, "InvalidRequest", FailureKind.REJECTED_CONTENT),
        (429, None, FailureKind.RATE_LIMITED),
        (500, None, FailureKind.NETWORK),
        (502, None, FailureKind.NETWORK),
        (400, "InvalidSwap", FailureKind.UNKNOWN),
    ],
)
def test_each_bluesky_error_maps_to_a_failure_kind(
    bluesky: tuple[FakeBluesky, ChannelRef], status: int, error: str | None, kind: FailureKind
) -> None:
    # Given a PDS that refuses the next record
    fake, channel = bluesky
    fake.faults.fail_next(status, endpoint="createRecord", error=error)
    # When a post is published with a fresh session
    failed = failure(lambda: BlueskyConnector().publish(channel, POST, "post-1/ch-b"))
    # Then the failure is typed, and there is no post
    assert failed.kind == kind
    assert failed.transient == (kind in (FailureKind.RATE_LIMITED, FailureKind.NETWORK))
    assert fake.created == 0


def test_a_bluesky_rate_limit_says_when_to_retry(bluesky: tuple[FakeBluesky, ChannelRef]) -> None:
    fake, channel = bluesky
    fake.faults.fail_next(429, endpoint="createRecord", reset_in=60)
    error = failure(lambda: BlueskyConnector().publish(channel, POST, "post-1/ch-b"))
    assert error.retry_after is not None
    assert 55 <= error.retry_after <= 61


def test_an_expired_bluesky_session_is_renewed_once(bluesky: tuple[FakeBluesky, ChannelRef]) -> None:
    # Given a connector whose cached session has expired since its last post
    fake, channel = bluesky
    connector = BlueskyConnector()
    connector.publish(channel, POST, "post-1/ch-b")
    fake.expire_sessions()
    # When it publishes again
    connector.publish(channel, POST, "post-2/ch-b")
    # Then it logged in again and posted, without logging in for every post
    assert (fake.logins, fake.created) == (2, 2)
    connector.publish(channel, POST, "post-3/ch-b")
    assert fake.logins == 2


def test_a_wrong_bluesky_app_password_is_expired_auth(bluesky: tuple[FakeBluesky, ChannelRef]) -> None:
    fake, channel = bluesky
    revoked = ChannelRef(channel.id, channel.platform, channel.handle, {**channel.credentials, "app_password": "nope"})
    error = failure(lambda: BlueskyConnector().publish(revoked, POST, "post-1/ch-b"))
    assert error.kind == FailureKind.AUTH_EXPIRED
    assert BlueskyConnector().check(revoked).health == Health.REVOKED
    assert fake.created == 0


@pytest.mark.parametrize(
    ("status", "error", "health"),
    [(None, None, Health.OK), (401, "AuthenticationRequired", Health.REVOKED), (400, "ExpiredToken", Health.EXPIRED)],
)
def test_a_bluesky_check_maps_create_session_to_health(
    bluesky: tuple[FakeBluesky, ChannelRef], status: int | None, error: str | None, health: Health
) -> None:
    fake, channel = bluesky
    if status:
        fake.faults.fail_next(status, endpoint="createSession", error=error)
    assert BlueskyConnector().check(channel).health == health


def test_a_bluesky_check_under_rate_limit_is_retried_later(bluesky: tuple[FakeBluesky, ChannelRef]) -> None:
    fake, channel = bluesky
    fake.faults.fail_next(429, endpoint="createSession")
    assert failure(lambda: BlueskyConnector().check(channel)).kind == FailureKind.RATE_LIMITED


# Webhook


@pytest.fixture(scope="module")
def webhook_server() -> Iterator[tuple[FakeWebhook, str]]:
    fake = FakeWebhook()
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
def webhook(webhook_server: tuple[FakeWebhook, str]) -> tuple[FakeWebhook, ChannelRef]:
    fake, url = webhook_server
    fake.reset()
    return fake, ChannelRef("ch-w", "WEBHOOK", "intranet", {"url": f"{url}/hook", "secret": fake.secret})


def test_a_webhook_post_is_delivered_signed_and_returns_the_receivers_id(
    webhook: tuple[FakeWebhook, ChannelRef],
) -> None:
    # Given a receiver that checks the signature
    fake, channel = webhook
    # When a post with media is published
    variant = VariantRef("Bonjour", ("https://cdn.example/a.jpg",))
    published = WebhookConnector().publish(channel, variant, "post-1/ch-w")
    # Then the receiver got the documented payload and answered with its id and URL
    payload = fake.posts["post-1/ch-w"]["payload"]
    assert payload == {
        "idempotency_key": "post-1/ch-w",
        "channel": {"id": "ch-w", "platform": "WEBHOOK", "handle": "intranet"},
        "body": "Bonjour",
        "media_urls": ["https://cdn.example/a.jpg"],
        "in_reply_to": None,
    }
    assert (published.external_id, published.external_url) == ("post-1", "https://receiver.example/posts/post-1")


def test_publishing_twice_with_the_same_key_makes_one_webhook_post(webhook: tuple[FakeWebhook, ChannelRef]) -> None:
    fake, channel = webhook
    first = WebhookConnector().publish(channel, POST, "post-1/ch-w")
    again = WebhookConnector().publish(channel, POST, "post-1/ch-w")
    assert again.external_id == first.external_id
    assert (fake.requests["post-1/ch-w"], fake.created) == (2, 1)


def test_a_receiver_that_answers_no_id_is_known_by_the_idempotency_key(
    webhook: tuple[FakeWebhook, ChannelRef],
) -> None:
    fake, channel = webhook
    fake.reset(answer_with_id=False)
    published = WebhookConnector().publish(channel, POST, "post-1/ch-w")
    assert (published.external_id, published.external_url) == ("post-1/ch-w", None)


def test_a_webhook_signed_with_the_wrong_secret_is_refused(webhook: tuple[FakeWebhook, ChannelRef]) -> None:
    # Given a channel whose secret differs from the receiver's
    fake, channel = webhook
    wrong = ChannelRef(channel.id, channel.platform, channel.handle, {**channel.credentials, "secret": "other"})
    # When it publishes, or is checked
    error = failure(lambda: WebhookConnector().publish(wrong, POST, "post-1/ch-w"))
    # Then the receiver refused the signature: the credentials need renewing, and nothing was posted
    assert error.kind == FailureKind.AUTH_EXPIRED
    assert WebhookConnector().check(wrong).health == Health.REVOKED
    assert fake.created == 0


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, FailureKind.AUTH_EXPIRED),
        (403, FailureKind.AUTH_EXPIRED),
        (400, FailureKind.REJECTED_CONTENT),
        (422, FailureKind.REJECTED_CONTENT),
        (429, FailureKind.RATE_LIMITED),
        (500, FailureKind.NETWORK),
        (503, FailureKind.NETWORK),
        (404, FailureKind.UNKNOWN),
    ],
)
def test_each_webhook_error_status_maps_to_a_failure_kind(
    webhook: tuple[FakeWebhook, ChannelRef], status: int, kind: FailureKind
) -> None:
    fake, channel = webhook
    fake.faults.fail_next(status, reset_in=42)
    error = failure(lambda: WebhookConnector().publish(channel, POST, "post-1/ch-w"))
    assert error.kind == kind
    assert error.transient == (kind in (FailureKind.RATE_LIMITED, FailureKind.NETWORK))
    assert error.retry_after == (42 if status == 429 else None)
    assert fake.created == 0


def test_a_webhook_timeout_is_transient(webhook: tuple[FakeWebhook, ChannelRef]) -> None:
    fake, channel = webhook
    fake.faults.hang_next(1.0)
    error = failure(lambda: WebhookConnector(timeout=0.3).publish(channel, POST, "post-1/ch-w"))
    assert error.kind == FailureKind.NETWORK
    assert WebhookConnector().publish(channel, POST, "post-1/ch-w").external_id == "post-1"
    assert fake.created == 1


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/hook", "gopher://127.0.0.1:70/"])
def test_a_webhook_url_that_is_not_http_is_never_called(url: str) -> None:
    channel = ChannelRef("ch-w", "WEBHOOK", "intranet", {"url": url, "secret": "s"})
    error = failure(lambda: WebhookConnector().publish(channel, POST, "post-1/ch-w"))
    assert error.kind == FailureKind.REJECTED_CONTENT


def test_a_webhook_check_pings_the_receiver(webhook: tuple[FakeWebhook, ChannelRef]) -> None:
    fake, channel = webhook
    assert WebhookConnector().check(channel).health == Health.OK
    assert (fake.pings, fake.created) == (1, 0)


def test_missing_credentials_ask_for_the_channel_to_be_reconnected() -> None:
    channel = ChannelRef("ch-w", "WEBHOOK", "intranet", {"url": "https://receiver.example/hook"})
    error = failure(lambda: WebhookConnector().publish(channel, POST, "post-1/ch-w"))
    assert error.kind == FailureKind.AUTH_EXPIRED
    assert "'secret'" in error.message


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    in_a_minute = (datetime.now(UTC) + timedelta(seconds=60)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after("120") == 120
    assert 55 <= (parse_retry_after(in_a_minute) or 0) <= 60
    assert parse_retry_after("soon") is None


# Sandbox

SANDBOX = ChannelRef("tenant-1/channel/sb", "SANDBOX", "@maison_demo", {})
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def test_the_sandbox_publishes_deterministically_by_idempotency_key() -> None:
    # Given the sandbox, when the same post is published twice and another once
    connector = SandboxConnector()
    first = connector.publish(SANDBOX, POST, "post-1/sb")
    again = connector.publish(SANDBOX, POST, "post-1/sb")
    other = connector.publish(SANDBOX, POST, "post-2/sb")
    # Then a retry is the same post, and another post is another
    assert (again.external_id, again.external_url) == (first.external_id, first.external_url)
    assert other.external_id != first.external_id
    assert re.fullmatch(r"https://sandbox\.parvis\.dev/@maison_demo/[0-9a-f-]{36}", first.external_url or "")


@pytest.mark.parametrize(
    ("credentials", "body", "kind"),
    [
        ({"expired": True}, "Bonjour", FailureKind.AUTH_EXPIRED),
        ({"unreachable": True}, "Bonjour", FailureKind.NETWORK),
        ({}, "Promo [sandbox:reject] !", FailureKind.REJECTED_CONTENT),
    ],
)
def test_the_sandbox_fails_as_its_credentials_and_content_say(
    credentials: dict[str, bool], body: str, kind: FailureKind
) -> None:
    channel = ChannelRef("ch-s", "SANDBOX", "@s", credentials)
    assert failure(lambda: SandboxConnector().publish(channel, VariantRef(body), "k")).kind == kind


def test_sandbox_interactions_are_deterministic_and_arrive_after_their_post() -> None:
    # Given three posts published an hour apart
    published = [(f"p{i}", T0 + timedelta(hours=i)) for i in range(3)]
    # When the interactions are read two days later, twice, and once 65 minutes after the first post
    later = interactions_for(SANDBOX, published, T0 + timedelta(days=2))
    earlier = interactions_for(SANDBOX, published, T0 + timedelta(minutes=65))
    # Then they are the same each time, each arrives after its post, and the earlier ones are among the later
    assert later == interactions_for(SANDBOX, published, T0 + timedelta(days=2))
    when = dict(published)
    assert all(when[i["post_external_id"]] <= i["received_at"] <= T0 + timedelta(days=2) for i in later)
    assert {i["external_id"] for i in earlier} < {i["external_id"] for i in later}
    assert len({i["external_id"] for i in later}) == len(later)


def test_sandbox_interactions_are_mostly_positive_with_some_negative_and_spam() -> None:
    published = [(f"p{i}", T0 + timedelta(hours=i)) for i in range(30)]
    interactions = interactions_for(SANDBOX, published, T0 + timedelta(days=5))
    sentiments = [i["sentiment"] for i in interactions]
    assert sentiments.count("positive") > len(sentiments) / 2
    assert "negative" in sentiments
    assert "spam" in sentiments
    assert {i["kind"] for i in interactions} == {"COMMENT", "REPLY", "MENTION", "DIRECT_MESSAGE", "OFFER"}


def test_sandbox_metrics_are_deterministic_and_grow_over_time() -> None:
    # Given two posts, the second published a day after the first
    published = [("p1", T0), ("p2", T0 + timedelta(days=1))]
    # When the metrics are read at successive moments
    moments = [T0 + timedelta(hours=h) for h in (0, 1, 6, 23, 25, 48, 96)]
    series = [metrics_for(SANDBOX, published, at) for at in moments]
    # Then they are the same when read again, and never go down
    assert series == [metrics_for(SANDBOX, published, at) for at in moments]
    channel = [rows[-1] for rows in series]
    for key in ("followers", "impressions", "reach", "engagements", "shares", "clicks"):
        assert [row[key] for row in channel] == sorted(row[key] for row in channel)
    assert channel[-1]["impressions"] > channel[0]["impressions"]
    # And a post counts only once it is published
    assert [row["external_id"] for row in series[3]] == ["p1", None]
    assert [row["external_id"] for row in series[4]] == ["p1", "p2", None]


def test_the_registry_offers_every_connector_by_name() -> None:
    assert set(connectors()) == {"sandbox", "mastodon", "bluesky", "webhook"}
    assert set(sandbox.connectors()) == set(connectors())
