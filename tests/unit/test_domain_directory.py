"""The directory's aggregates and commands, on the library's in-memory store (unit tests only)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from domain.app import Parvis
from domain.context import Actor, acting_as, current_actor, event_meta
from domain.errors import InvalidInput, InvalidTransition, NotFound
from domain.roles import MATRIX, Permission, Role, allows
from domain.tenant import Tenant

PASSWORD = "correct horse battery"


class FakeSecrets:
    def seal(self, plaintext: str) -> str:
        return "sealed:" + plaintext[::-1]

    def hash_password(self, password: str) -> str:
        return "hashed"


@pytest.fixture
def app() -> Iterator[Parvis]:
    application = Parvis(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, secrets=FakeSecrets())
    with acting_as(Actor(id="tester", role="AGENCY_ADMIN")):
        yield application


@pytest.fixture
def agency_key(app: Parvis) -> str:
    return app.register_agency("Agence", "admin@agence.test", PASSWORD).value[0]


def test_a_tenant_is_created_active_with_the_default_approval_policy(app: Parvis, agency_key: str) -> None:
    key = app.create_tenant(agency_key, "Croix-Rouge", "NGO", "Europe/Paris").value
    tenant = app.tenant(key)
    assert tenant.status == "ACTIVE"
    assert tenant.approval_policy.internal_approvals == 1
    assert tenant.id == f"{key}/tenant/{key}"


@pytest.mark.parametrize(
    ("name", "kind", "tz", "locale", "field"),
    [
        ("", "NGO", "Europe/Paris", "fr-FR", "name"),
        ("X" * 201, "NGO", "Europe/Paris", "fr-FR", "name"),
        ("Ok", "CHARITY", "Europe/Paris", "fr-FR", "kind"),
        ("Ok", "NGO", "Mars/Olympus", "fr-FR", "timezone"),
        ("Ok", "NGO", "Europe/Paris", "french", "locale"),
    ],
)
def test_bad_tenant_input_is_refused_naming_the_field(
    app: Parvis, agency_key: str, name: str, kind: str, tz: str, locale: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        app.create_tenant(agency_key, name, kind, tz, locale)
    assert refused.value.field == (field,)


def test_an_offboarded_tenant_is_final(app: Parvis, agency_key: str) -> None:
    key = app.create_tenant(agency_key, "Marque", "BRAND", "Europe/Paris").value
    app.update_tenant(key, status="OFFBOARDED")
    with pytest.raises(InvalidTransition):
        app.update_tenant(key, status="ACTIVE")


def test_status_moves_follow_the_state_machine() -> None:
    tenant = Tenant(tenant_key="a" * 32, agency_key="b" * 32, name="T", kind="NGO", timezone="UTC", locale="fr")
    from domain.tenant import TenantStatus

    tenant.change_status(TenantStatus.PAUSED)
    tenant.change_status(TenantStatus.ACTIVE)
    tenant.change_status(TenantStatus.OFFBOARDED)
    with pytest.raises(InvalidTransition):
        tenant.change_status(TenantStatus.PAUSED)


def test_approval_policy_is_versioned_and_bounded(app: Parvis, agency_key: str) -> None:
    key = app.create_tenant(agency_key, "T", "NGO", "Europe/Paris").value
    app.set_approval_policy(key, 2, True, 48)
    app.set_approval_policy(key, 0, False, None)
    assert app.tenant(key).approval_policy_version == 2
    with pytest.raises(InvalidInput) as refused:
        app.set_approval_policy(key, 4, False, None)
    assert refused.value.field == ("internalApprovals",)


def test_channel_credentials_are_sealed_in_the_event(app: Parvis, agency_key: str) -> None:
    key = app.create_tenant(agency_key, "T", "NGO", "Europe/Paris").value
    channel_id = app.connect_channel(key, "MASTODON", "@croix", None, {"token": "s3cret"}).value
    stored = [n.state for n in app.notification_log.select(1, 10) if n.originator_id == channel_id]
    assert stored
    assert b"s3cret" not in stored[0]
    assert channel_id.startswith(f"{key}/channel/")


def test_a_client_role_needs_a_tenant_and_a_new_user_a_password(app: Parvis, agency_key: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        app.grant_membership(agency_key, "c@client.test", "CLIENT_ADMIN", None, password=PASSWORD)
    assert refused.value.field == ("tenantId",)
    key = app.create_tenant(agency_key, "T", "NGO", "Europe/Paris").value
    with pytest.raises(InvalidInput) as refused:
        app.grant_membership(agency_key, "c@client.test", "CLIENT_ADMIN", key)
    assert refused.value.field == ("password",)


def test_revoking_and_granting_again_reuses_the_membership(app: Parvis, agency_key: str) -> None:
    key = app.create_tenant(agency_key, "T", "NGO", "Europe/Paris").value
    user_id, membership_id = app.grant_membership(agency_key, "v@c.test", "CLIENT_VIEWER", key, "V", PASSWORD).value
    app.revoke_membership(user_id, "CLIENT_VIEWER", key)
    with pytest.raises(InvalidTransition):
        app.revoke_membership(user_id, "CLIENT_VIEWER", key)
    again = app.grant_membership(agency_key, "v@c.test", "CLIENT_VIEWER", key).value
    assert again == (user_id, membership_id)


def test_unknown_ids_are_not_found(app: Parvis) -> None:
    with pytest.raises(NotFound):
        app.tenant("0" * 32)


def test_events_carry_the_actor_from_context(app: Parvis, agency_key: str) -> None:
    with acting_as(Actor(id="u-1", role="COMMUNITY_MANAGER", on_behalf_of="t-1", reason="because")):
        assert current_actor().id == "u-1"
        meta = event_meta()
    assert meta["actor"] == "u-1"
    assert meta["role"] == "COMMUNITY_MANAGER"
    assert meta["on_behalf_of"] == "t-1"
    assert meta["reason"] == "because"
    assert meta["correlation_id"]


def test_the_role_matrix_matches_the_contract_header() -> None:
    assert allows(Role.AGENCY_ADMIN, Permission.MANAGE_TENANTS)
    assert not allows(Role.COMMUNITY_MANAGER, Permission.MANAGE_TENANTS)
    assert allows(Role.CLIENT_ADMIN, Permission.MANAGE_CLIENT_USERS)
    assert not allows(Role.AGENCY_ADMIN, Permission.CLIENT_APPROVAL)
    assert allows(Role.CLIENT_REVIEWER, Permission.CLIENT_APPROVAL)
    assert allows(Role.AUDITOR, Permission.AUDIT)
    assert not allows(Role.AUDITOR, Permission.DRAFT)
    assert not allows(Role.CLIENT_VIEWER, Permission.AUDIT)
    assert allows(Role.CLIENT_ADMIN, Permission.CRISIS)
    assert set(MATRIX) == set(Permission)
