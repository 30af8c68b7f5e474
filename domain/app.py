"""The application service: thin commands that load aggregates, call one method, and save."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    IntegrityError,
    JSONTranscoder,
    Mapper,
    Transcoder,
    UUIDAsHex,
)

from domain import values
from domain.agency import Agency
from domain.base import ParvisAggregate, new_key, scope_of
from domain.channel import CONNECTOR_OF, Channel, ChannelHealth, Platform
from domain.context import Receipt, current_receipt, event_time
from domain.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from domain.inbox import ModerationCommands, PersonalData
from domain.metrics import MetricsCommands
from domain.people import AccessDenial, ApiKey, Membership, User
from domain.publishing import PublishingCommands
from domain.reports import ReportCommands
from domain.roles import Role
from domain.tenant import ApprovalPolicy, Tenant, TenantKind, TenantStatus

T = TypeVar("T")
A = TypeVar("A", bound=ParvisAggregate)


class Secrets(Protocol):
    """What the domain needs from cryptography, provided by the composition root."""

    def seal(self, plaintext: str) -> str:
        """Encrypt a secret for storage in an event."""

    def hash_password(self, password: str) -> str:
        """Hash a password (argon2id) and seal the hash."""

    def reseal(self, sealed: str) -> str | None:
        """The same secret sealed under the current key; None when it already is."""


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """The result of a command and the event position that records it (None when nothing changed)."""

    value: T
    position: int | None


def make_transcoder() -> Transcoder:
    """The JSON transcoder shared by the store and the projections."""
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DecimalAsStr())
    transcoder.register(DatetimeAsISO())
    return transcoder


def make_mapper() -> Mapper[str]:
    """A mapper that turns stored events back into domain events, without a database."""
    return Mapper(transcoder=make_transcoder())


class Parvis(ReportCommands, MetricsCommands, ModerationCommands, PublishingCommands, Application[str]):
    """All aggregates of all tenants, in one store with one notification sequence."""

    name = "Parvis"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        secrets: Secrets | None = None,
        clock: Callable[[], datetime] | None = None,
        personal: PersonalData | None = None,
    ) -> None:
        super().__init__(env)
        self._secrets = secrets
        self._personal = personal
        self._clock = clock or event_time

    def now(self) -> datetime:
        """The current instant (a clock the tests control)."""
        return self._clock()

    def close(self) -> None:
        super().close()
        closer = getattr(self._personal, "close", None)
        if closer is not None:
            closer()

    @property
    def personal(self) -> PersonalData:  # type: ignore[override]
        if self._personal is None:
            raise RuntimeError("this command needs the personal-data port")
        return self._personal

    @property
    def secrets(self) -> Secrets:
        if self._secrets is None:
            raise RuntimeError("this command needs the secrets port")
        return self._secrets

    # ------------------------------------------------------------------ plumbing
    def load(self, aggregate_id: str, kind: type[A], field: str = "id") -> A:
        """Load an aggregate of a given class, or refuse with NOT_FOUND naming the field."""
        try:
            aggregate: ParvisAggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"{field} does not name an existing {kind.__name__.lower()}", field) from None
        if not isinstance(aggregate, kind):
            raise NotFound(f"{field} does not name an existing {kind.__name__.lower()}", field)
        return aggregate

    def exists(self, aggregate_id: str) -> bool:
        return bool(self.recorder.select_events(aggregate_id, limit=1))

    def commit(self, *aggregates: ParvisAggregate | None, receipt: tuple[Receipt, Any] | None = None) -> int | None:
        """Save aggregates atomically; a concurrent change on any of them is a CONFLICT. A receipt (idempotency
        key, result) is recorded by the event store in the same transaction."""
        try:
            recordings = self.save(*aggregates, receipt=receipt)
        except IntegrityError:
            raise Conflict("another change to the same object was saved first; retry", None) from None
        return max((r.notification.id for r in recordings), default=None)

    def done(self, value: T, *aggregates: ParvisAggregate | None) -> Outcome[T]:
        """A command's end: save its aggregates and answer its value. Under an idempotency key (domain.context.
        answering) the value is stored with the events, so a retry after a cut answers it instead of running again."""
        changed = [a for a in aggregates if a is not None]
        if not changed:
            return Outcome(value, None)
        receipt = current_receipt()
        return Outcome(value, self.commit(*changed, receipt=(receipt, value) if receipt else None))

    # ------------------------------------------------------------------ agencies and tenants
    def register_agency(
        self,
        name: str,
        admin_email: str,
        admin_password: str,
        admin_name: str | None = None,
        agency_key: str | None = None,
    ) -> Outcome[tuple[str, str]]:
        name = values.required_text(name, "name")
        email = values.email(admin_email, "adminEmail")
        check_password(admin_password, "adminPassword")
        agency_key = agency_key or new_key()
        agency = Agency(agency_key=agency_key, name=name)
        user = User(
            agency_key=agency_key,
            email=email,
            display_name=admin_name or email.split("@")[0],
            password=self.secrets.hash_password(admin_password),
        )
        membership = Membership(user_id=user.id, role=Role.AGENCY_ADMIN.value, tenant_key=None, agency_key=agency_key)
        return self.done((agency_key, user.id), agency, user, membership)

    def create_tenant(
        self, agency_key: str, name: str, kind: str, timezone: str, locale: str = "fr-FR"
    ) -> Outcome[str]:
        tenant_key = new_key()
        tenant = Tenant(
            tenant_key=tenant_key,
            agency_key=agency_key,
            name=values.required_text(name, "name"),
            kind=values.choice(kind, TenantKind, "kind").value,
            timezone=values.timezone(timezone),
            locale=values.locale(locale),
        )
        return self.done(tenant_key, tenant)

    def tenant(self, tenant_key: str, field: str = "tenantId") -> Tenant:
        return self.load(Tenant.create_id(tenant_key), Tenant, field)

    def update_tenant(
        self, tenant_key: str, name: str | None = None, timezone: str | None = None, status: str | None = None
    ) -> Outcome[str]:
        tenant = self.tenant(tenant_key)
        if tenant.status == TenantStatus.OFFBOARDED.value:
            raise InvalidTransition("an offboarded tenant cannot be changed", "tenantId")
        if name is not None and (name := values.required_text(name, "name")) != tenant.name:
            tenant.rename(name)
        if timezone is not None and values.timezone(timezone) != tenant.timezone:
            tenant.change_timezone(timezone)
        if status is not None:
            tenant.change_status(values.choice(status, TenantStatus, "status"))
        return self.done(tenant_key, tenant)

    def set_approval_policy(
        self, tenant_key: str, internal_approvals: int, client_approval: bool, expires_after_hours: int | None
    ) -> Outcome[str]:
        tenant = self.tenant(tenant_key)
        tenant.set_approval_policy(ApprovalPolicy(internal_approvals, client_approval, expires_after_hours))
        return self.done(tenant_key, tenant)

    # ------------------------------------------------------------------ channels
    def connect_channel(
        self,
        tenant_key: str,
        platform: str,
        handle: str,
        mission: str | None,
        credentials: Mapping[str, Any] | None,
    ) -> Outcome[str]:
        self.tenant(tenant_key).check_not_offboarded()
        plat = values.choice(platform, Platform, "platform")
        sealed = None
        if credentials:
            sealed = self.secrets.seal(json.dumps(dict(credentials), sort_keys=True))
        channel = Channel(
            tenant_key=tenant_key,
            platform=plat.value,
            handle=values.required_text(handle, "handle", max_len=120),
            mission=values.text(mission, "mission", max_len=2000, required=False),
            connector=CONNECTOR_OF.get(plat, "sandbox"),
            credentials=sealed,
        )
        return self.done(channel.id, channel)

    def record_channel_health(
        self, channel_id: str, health: str, detail: str | None, check_id: str | None = None
    ) -> Outcome[bool]:
        """Record a credentials check; False when that check was already recorded (a redelivered job)."""
        channel = self.load(channel_id, Channel, "channelId")
        recorded = channel.record_health(ChannelHealth(health), detail, check_id)
        return self.done(recorded, channel if recorded else None)

    def channel(self, channel_id: str) -> Channel:
        return self.load(channel_id, Channel, "channelId")

    def disconnect_channel(self, channel_id: str) -> Outcome[str]:
        channel = self.load(channel_id, Channel, "channelId")
        channel.disconnect()
        return self.done(channel_id, channel)

    def reseal_channel_credentials(self, channel_id: str) -> Outcome[bool]:
        """Seal a channel's credentials again under the current key (key rotation); False if nothing to do."""
        channel = self.load(channel_id, Channel, "channelId")
        sealed = self.secrets.reseal(channel.credentials) if channel.credentials else None
        if sealed is None:
            return Outcome(False, None)
        channel.reseal_credentials(sealed)
        return self.done(True, channel)

    # ------------------------------------------------------------------ people
    def grant_membership(
        self,
        agency_key: str,
        email: str,
        role: str,
        tenant_key: str | None,
        display_name: str | None = None,
        password: str | None = None,
    ) -> Outcome[tuple[str, str]]:
        """Give a role to a person (registering them first if new); returns (user id, membership id)."""
        email = values.email(email)
        role_ = values.choice(role, Role, "role")
        if tenant_key is None and role_.is_client:
            raise InvalidInput("a client role must be given on one tenant", "tenantId")
        if tenant_key is not None:
            self.tenant(tenant_key).check_not_offboarded()
        user_id = User.create_id(agency_key, email)
        user: User | None = None
        if not self.exists(user_id):
            if password is None:
                raise InvalidInput("a new user needs an initial password", "password")
            check_password(password, "password")
            user = User(
                agency_key=agency_key,
                email=email,
                display_name=values.required_text(display_name or email.split("@")[0], "displayName"),
                password=self.secrets.hash_password(password),
            )
        scope = tenant_key or agency_key
        membership_id = Membership.id_for(scope, user_id, role_.value)
        if self.exists(membership_id):
            membership = self.load(membership_id, Membership)
            membership.regrant()
        else:
            membership = Membership(user_id=user_id, role=role_.value, tenant_key=tenant_key, agency_key=agency_key)
        return self.done((user_id, membership.id), user, membership)

    def revoke_membership(self, user_id: str, role: str, scope: str) -> Outcome[str]:
        role_ = values.choice(role, Role, "role")
        membership = self.load(Membership.id_for(scope, user_id, role_.value), Membership, "userId")
        membership.revoke()
        return self.done(membership.id, membership)

    def change_password(self, user_id: str, password: str, field: str = "password") -> Outcome[str]:
        """A new password; every access token issued before it is revoked."""
        check_password(password, field)
        user = self.load(user_id, User, "userId")
        user.change_password(self.secrets.hash_password(password))
        user.revoke_tokens()
        return self.done(user_id, user)

    def reseal_password(self, user_id: str) -> Outcome[bool]:
        """Seal a user's password hash again under the current key (key rotation); False if nothing to do."""
        user = self.load(user_id, User, "userId")
        sealed = self.secrets.reseal(user.password) if user.password else None
        if sealed is None:
            return Outcome(False, None)
        user.reseal_password(sealed)
        return self.done(True, user)

    def revoke_tokens(self, user_id: str) -> Outcome[str]:
        user = self.load(user_id, User, "userId")
        user.revoke_tokens()
        return self.done(user_id, user)

    def issue_api_key(self, user_id: str, key_id: str, name: str, digest: str) -> Outcome[str]:
        user = self.load(user_id, User, "userId")
        key = ApiKey(agency_key=user.scope, key_id=key_id, user_id=user.id, name=values.required_text(name, "name"),
                     digest=digest)
        return self.done(key.id, key)

    def revoke_api_key(self, agency_key: str, key_id: str) -> Outcome[str]:
        key = self.load(ApiKey.create_id(agency_key, key_id), ApiKey, "apiKeyId")
        key.revoke()
        return self.done(key.id, key)

    def record_access_denied(
        self, scope: str, operation: str, user_id: str | None, role: str | None, required: str
    ) -> Outcome[str]:
        denial = AccessDenial(scope=scope, operation=operation, user_id=user_id, role=role, required=required)
        return self.done(denial.id, denial)


def check_password(password: str, field: str) -> None:
    """Passwords: at least 10 characters, at most 200."""
    if not isinstance(password, str) or not 10 <= len(password) <= 200:
        raise InvalidInput(f"{field} must have between 10 and 200 characters", field)


__all__ = ["Outcome", "Parvis", "Secrets", "make_mapper", "make_transcoder", "scope_of"]
