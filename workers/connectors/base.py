"""The one interface every platform connector implements, and its typed failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Protocol


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
    """The text and media of one post on one channel."""

    body: str
    media_urls: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Published:
    external_id: str
    external_url: str | None
    published_at: datetime


@dataclass(frozen=True)
class CheckResult:
    health: Health
    detail: str | None = None


class Connector(Protocol):
    """Publish a variant, check credentials (fetching interactions and metrics come later)."""

    name: str

    def check(self, channel: ChannelRef) -> CheckResult:
        """Whether the channel's credentials work."""
        ...

    def publish(self, channel: ChannelRef, variant: VariantRef, idempotency_key: str) -> Published:
        """Publish once: the same idempotency key never creates a second post on the platform."""
        ...
