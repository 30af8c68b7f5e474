"""People: users of an agency, their memberships (role per tenant or agency-wide) and API keys."""

from __future__ import annotations

import uuid
from typing import ClassVar

from eventsourcing.domain import event

from domain.base import ParvisAggregate, aggregate_id
from domain.errors import InvalidTransition


class User(ParvisAggregate):
    """A person who signs in; belongs to one agency (its scope)."""

    @staticmethod
    def create_id(agency_key: str, email: str) -> str:
        # One user per e-mail per agency: a second registration of the same address collides.
        return aggregate_id(agency_key, "user", uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{email}").hex)

    class Registered(ParvisAggregate.Created):
        agency_key: str
        email: str
        display_name: str
        password: str | None  # ciphertext of the argon2id hash
        SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"password"})

    @event(Registered)
    def __init__(self, agency_key: str, email: str, display_name: str, password: str | None) -> None:
        self.agency_key = agency_key
        self.email = email
        self.display_name = display_name
        self.password = password

    class PasswordChanged(ParvisAggregate.Event):
        password: str
        SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"password"})

    @event(PasswordChanged)
    def change_password(self, password: str) -> None:
        self.password = password

    class PasswordResealed(ParvisAggregate.Event):
        """The same password hash, sealed again under a new master secret (a key rotation)."""

        password: str
        SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"password"})

    @event(PasswordResealed)
    def reseal_password(self, password: str) -> None:
        self.password = password

    @event("Renamed")
    def rename(self, display_name: str) -> None:
        self.display_name = display_name

    @event("TokensRevoked")
    def revoke_tokens(self) -> None:
        """Every access token issued before now stops working."""


class Membership(ParvisAggregate):
    """A role held by a user on one tenant, or agency-wide (scope = agency key)."""

    @staticmethod
    def create_id(user_id: str, role: str, tenant_key: str | None, agency_key: str) -> str:
        scope: str = tenant_key or agency_key
        return aggregate_id(scope, "membership", uuid.uuid5(uuid.NAMESPACE_URL, f"{user_id}#{role}").hex)

    @staticmethod
    def id_for(scope: str, user_id: str, role: str) -> str:
        """The membership id of a role held by a user in a scope (tenant key, or agency key when agency-wide)."""
        return aggregate_id(scope, "membership", uuid.uuid5(uuid.NAMESPACE_URL, f"{user_id}#{role}").hex)

    class Granted(ParvisAggregate.Created):
        user_id: str
        role: str
        tenant_key: str | None
        agency_key: str

    @event(Granted)
    def __init__(self, user_id: str, role: str, tenant_key: str | None, agency_key: str) -> None:
        self.user_id = user_id
        self.role = role
        self.tenant_key = tenant_key
        self.agency_key = agency_key
        self.active = True

    def regrant(self) -> None:
        if self.active:
            raise InvalidTransition("this membership is already granted", "role")
        self._regranted()

    @event("Regranted")
    def _regranted(self) -> None:
        self.active = True

    def revoke(self) -> None:
        if not self.active:
            raise InvalidTransition("this membership is already revoked", "role")
        self._revoked()

    @event("Revoked")
    def _revoked(self) -> None:
        self.active = False


class ApiKey(ParvisAggregate):
    """A key for an agency's servers, acting as one user; only a digest of the secret is kept."""

    @staticmethod
    def create_id(agency_key: str, key_id: str) -> str:
        return aggregate_id(agency_key, "apikey", key_id)

    class Issued(ParvisAggregate.Created):
        agency_key: str
        key_id: str
        user_id: str
        name: str
        digest: str
        SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"digest"})

    @event(Issued)
    def __init__(self, agency_key: str, key_id: str, user_id: str, name: str, digest: str) -> None:
        self.agency_key = agency_key
        self.key_id = key_id
        self.user_id = user_id
        self.name = name
        self.digest = digest
        self.active = True

    def revoke(self) -> None:
        if not self.active:
            raise InvalidTransition("this API key is already revoked", "apiKeyId")
        self._revoked()

    @event("Revoked")
    def _revoked(self) -> None:
        self.active = False


class AccessDenial(ParvisAggregate):
    """A refused attempt, kept in the tenant's history (who tried what)."""

    @staticmethod
    def create_id(scope: str) -> str:
        return aggregate_id(scope, "denial")

    class AccessDenied(ParvisAggregate.Created):
        scope: str
        operation: str
        user_id: str | None
        role: str | None
        required: str

    @event(AccessDenied)
    def __init__(self, scope: str, operation: str, user_id: str | None, role: str | None, required: str) -> None:
        self.operation = operation
        self.user_id = user_id
        self.role = role
        self.required = required
