"""The one interface every platform connector implements, and its typed failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx


class Health(str, Enum):
    OK = "OK"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    UNKNOWN = "UNKNOWN"


class FailureKind(str, Enum):
    AUTH_EXPIRED = "auth_expired"
    RATE_LIMITED = "rate_limited"
    REJECTED_CONTENT = "rejected_content"
    NETWORK = "network"
    UNKNOWN = "unknown"


class ConnectorError(Exception):
    """A typed failure; `transient` ones are retried with backoff, the others are recorded as final."""

    def __init__(self, kind: FailureKind, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.kind in (FailureKind.RATE_LIMITED, FailureKind.NETWORK)


@dataclass(frozen=True)
class ChannelRef:
    """What a connector needs to know of a channel: never the aggregate itself."""

    id: str
    platform: str
    handle: str
    credentials: dict[str, Any]


@dataclass(frozen=True)
class VariantRef:
    """The text and media of one post on one channel; a reply names the platform id it answers."""

    body: str
    media_urls: tuple[str, ...] = field(default_factory=tuple)
    in_reply_to: str | None = None


@dataclass(frozen=True)
class Published:
    external_id: str
    external_url: str | None
    published_at: datetime


@dataclass(frozen=True)
class CheckResult:
    health: Health
    detail: str | None = None


@dataclass(frozen=True)
class Fetched:
    """One incoming interaction as a platform delivers it, for the moderation inbox."""

    kind: str  # "COMMENT" | "REPLY" | "DIRECT_MESSAGE" | "MENTION" | "REVIEW" | "OFFER"
    external_id: str  # the platform's id of the item (what a reply to it names)
    author: str  # the author's handle, e.g. "@alice@instance.social" or "alice.bsky.social"
    text: str  # plain text (HTML stripped)
    received_at: datetime  # timezone-aware
    in_reply_to: str | None = None  # the platform id of OUR post it answers, when it answers one

    def __post_init__(self) -> None:
        # What a platform sends is stored as it comes, less what PostgreSQL cannot store in text: one NUL in one
        # comment would stop the read models at its event, for every tenant (the API refuses such input instead).
        for name in ("external_id", "author", "text", "in_reply_to"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, storable(value))


def storable(text: str) -> str:
    """`text` without NUL characters, and with lone surrogates (invalid UTF-8) replaced by U+FFFD."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


@dataclass(frozen=True)
class Page:
    """What is new since a cursor, oldest first, and the cursor to give back next time."""

    items: list[Fetched]
    cursor: str | None


class Connector(Protocol):
    """Publish a variant (or a reply), check credentials, fetch incoming interactions."""

    name: str

    def check(self, channel: ChannelRef) -> CheckResult:
        """Whether the channel's credentials work."""
        ...

    def publish(self, channel: ChannelRef, variant: VariantRef, idempotency_key: str) -> Published:
        """Publish once: the same idempotency key never creates a second post on the platform."""
        ...

    def fetch_interactions(
        self, channel: ChannelRef, cursor: str | None, published: list[tuple[str, datetime]]
    ) -> Page:
        """Interactions received since `cursor` (None: the first fetch); `published` is (external id, time) of ours."""
        ...


class Measuring(Protocol):
    """A connector that measures a channel and its posts (the workers' `pull_metrics` asks those that have it)."""

    def fetch_metrics(self, channel: ChannelRef, published: list[tuple[str, datetime]]) -> list[dict[str, Any]]:
        """What the platform measures now: one row per post, then one for the channel.

        A post's row is `{"scope": "POST", "external_id", "measured_at", <metric>: <running total>, ...}` with only
        the counters the platform has (impressions, reach, engagements, likes, shares, replies, quotes, clicks);
        the channel's is `{"scope": "CHANNEL", "external_id": None, "followers": <level>, "measured_at"}`; other
        keys are not recorded. A post the platform no longer has gets no row."""
        ...


# Counters of older posts barely move, and their last totals stay recorded: bounding the posts a pull reads keeps
# it within the platforms' rate limits (Mastodon's default is 300 requests per 5 minutes) however long a channel
# has been posting.
MEASURED_FOR = timedelta(days=30)
MEASURED_POSTS = 100


def credential(channel: ChannelRef, key: str) -> str:
    """One required credential of a channel; a missing one means the channel must be reconnected."""
    value = channel.credentials.get(key)
    if not isinstance(value, str) or not value:
        raise ConnectorError(FailureKind.AUTH_EXPIRED, f"the channel's credentials lack '{key}': reconnect it")
    return value


def measured(published: list[tuple[str, datetime]], now: datetime) -> list[str]:
    """The external ids of the posts whose counters a pull reads, oldest first: the newest of the last 30 days."""
    recent = sorted((p for p in published if now - p[1] <= MEASURED_FOR), key=lambda p: p[1])
    return [external_id for external_id, _ in recent[-MEASURED_POSTS:]]


def json_object(response: httpx.Response, failure: Callable[[httpx.Response], ConnectorError],
                what: str) -> dict[str, Any]:
    """The JSON object a platform answered, or the typed failure of its refusal."""
    if response.status_code != 200:
        raise failure(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ConnectorError(FailureKind.UNKNOWN, f"{what} was answered but not readable")
    return body


def http_url(url: str) -> str:
    """The URL itself, refused (for good) unless it is http(s)."""
    # Connectors call only the URL configured on the channel; other schemes (file:, gopher:, ...) are never fetched.
    if urlsplit(url).scheme not in ("http", "https"):
        raise ConnectorError(FailureKind.REJECTED_CONTENT, "only http(s) URLs can be called")
    return url


def network_failure(platform: str, exc: Exception) -> ConnectorError:
    """A timeout or connection failure: transient, and the message names no URL, header or token."""
    return ConnectorError(FailureKind.NETWORK, f"{platform}: no answer ({type(exc).__name__})")


def seconds_until(moment: datetime) -> float:
    """How long until an instant, never negative."""
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return seconds_until(parsedate_to_datetime(value))
    except (TypeError, ValueError):
        return None
