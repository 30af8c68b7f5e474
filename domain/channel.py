"""A channel: one presence of a tenant on one platform, with encrypted credentials and a health status."""

from __future__ import annotations

from enum import Enum
from typing import ClassVar

from eventsourcing.domain import event

from domain.base import ParvisAggregate, aggregate_id
from domain.errors import InvalidTransition


class Platform(str, Enum):
    FACEBOOK = "FACEBOOK"
    X = "X"
    INSTAGRAM = "INSTAGRAM"
    LINKEDIN = "LINKEDIN"
    YOUTUBE = "YOUTUBE"
    PINTEREST = "PINTEREST"
    TIKTOK = "TIKTOK"
    MASTODON = "MASTODON"
    BLUESKY = "BLUESKY"
    BLOG = "BLOG"
    NEWSLETTER = "NEWSLETTER"
    FORUM = "FORUM"
    SANDBOX = "SANDBOX"
    WEBHOOK = "WEBHOOK"


class ChannelHealth(str, Enum):
    OK = "OK"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    UNKNOWN = "UNKNOWN"


# The connector that serves each platform; platforms without a real connector use the sandbox.
CONNECTOR_OF = {
    Platform.MASTODON: "mastodon",
    Platform.BLUESKY: "bluesky",
    Platform.WEBHOOK: "webhook",
}


class Channel(ParvisAggregate):
    """One presence on one platform."""

    @staticmethod
    def create_id(tenant_key: str) -> str:
        return aggregate_id(tenant_key, "channel")

    class Connected(ParvisAggregate.Created):
        tenant_key: str
        platform: str
        handle: str
        mission: str | None
        connector: str
        credentials: str | None  # ciphertext, never clear
        SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"credentials"})

    @event(Connected)
    def __init__(
        self,
        tenant_key: str,
        platform: str,
        handle: str,
        mission: str | None,
        connector: str,
        credentials: str | None,
    ) -> None:
        self.tenant_key = tenant_key
        self.platform = platform
        self.handle = handle
        self.mission = mission
        self.connector = connector
        self.credentials = credentials
        self.health = ChannelHealth.UNKNOWN.value
        self.connected = True
        self.credentials_version = 1
        self.checks_done: tuple[str, ...] = ()

    class CredentialsReplaced(ParvisAggregate.Event):
        credentials: str | None
        credentials_version: int
        SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"credentials"})

    def replace_credentials(self, credentials: str | None) -> None:
        self._replace_credentials(credentials=credentials, credentials_version=self.credentials_version + 1)

    @event(CredentialsReplaced)
    def _replace_credentials(self, credentials: str | None, credentials_version: int) -> None:
        self.credentials = credentials
        self.health = ChannelHealth.UNKNOWN.value
        self.credentials_version = credentials_version

    class CredentialsResealed(ParvisAggregate.Event):
        """The same credentials, sealed again under a new master secret (a key rotation): nothing to check."""

        credentials: str
        SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"credentials"})

    @event(CredentialsResealed)
    def reseal_credentials(self, credentials: str) -> None:
        self.credentials = credentials

    def record_health(self, health: ChannelHealth, detail: str | None, check_id: str | None = None) -> bool:
        """Record the result of a credentials check; a check already recorded is not recorded twice."""
        if check_id is not None and check_id in self.checks_done:
            return False
        self._health_checked(health=health.value, detail=detail, check_id=check_id)
        return True

    @event("HealthChecked")
    def _health_checked(self, health: str, detail: str | None, check_id: str | None) -> None:
        self.health = health
        if check_id is not None:
            self.checks_done = (*self.checks_done[-20:], check_id)

    def check_id(self) -> str:
        """The id of the check due for the current credentials (one per connection or replacement)."""
        return f"{self.id}@{self.credentials_version}"

    def disconnect(self) -> None:
        if not self.connected:
            raise InvalidTransition("the channel is already disconnected", "channelId")
        self._disconnected()

    @event("Disconnected")
    def _disconnected(self) -> None:
        self.connected = False
