"""The one interface every platform connector implements, and its typed failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any, Protocol
from urllib.parse import urlsplit


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


def credential(channel: ChannelRef, key: str) -> str:
    """One required credential of a channel; a missing one means the channel must be reconnected."""
    value = channel.credentials.get(key)
    if not isinstance(value, str) or not value:
        raise ConnectorError(FailureKind.AUTH_EXPIRED, f"the channel's credentials lack '{key}': reconnect it")
    return value


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
