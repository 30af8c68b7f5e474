"""Credentials over HTTP, against a running server: signing out everywhere, changing one's password, the agency's
API keys, and a revoked membership ending access."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from api import ids
from tests.e2e.test_directory_api import create_tenant, grant
from tests.support import PASSWORD, Client, GraphQLError

ME = "{ me { id email } }"
SIGN_OUT = "mutation { signOut { user { email } userErrors { code field message } consistent } }"
CHANGE = """mutation($i: ChangePasswordInput!) { changePassword(input: $i) {
  session { accessToken user { email } } userErrors { code field message } consistent } }"""
ISSUE = """mutation($i: IssueApiKeyInput!) { issueApiKey(input: $i) {
  apiKey { id name active user { id email } } secret userErrors { code field message } consistent } }"""
REVOKE = """mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) {
  apiKey { id name active } secret userErrors { code field message } consistent } }"""
KEYS = "{ apiKeys { id name active user { email } } }"
TENANT = "query($id: ID!) { tenant(id: $id) { id name } }"
REVOKE_MEMBERSHIP = """mutation($i: RevokeMembershipInput!) { revokeMembership(input: $i) {
  membership { role } userErrors { code field message } consistent } }"""


@pytest.fixture(scope="module")
def other_agency(server: str, domain: Any) -> Client:
    email = f"boss-{uuid.uuid4().hex[:8]}@ailleurs.test"
    domain.register_agency("Agence Ailleurs", email, PASSWORD)
    return Client(server).login(email)


@pytest.fixture(scope="module")
def tenant(admin: Client) -> str:
    return create_tenant(admin, f"Comptes {uuid.uuid4().hex[:6]}")["tenant"]["id"]  # type: ignore[no-any-return]


def test_sign_out_ends_every_session_of_the_caller_and_no_one_else(admin: Client, tenant: str) -> None:
    email = grant(admin, tenant, "CLIENT_VIEWER")
    laptop, phone, colleague = admin.login(email), admin.login(email), admin.login(grant(admin, tenant, "AUDITOR"))
    out = laptop.data(SIGN_OUT)["signOut"]
    assert out == {"user": {"email": email}, "userErrors": [], "consistent": True}
    assert laptop.error_codes(ME) == ["UNAUTHENTICATED"]
    assert phone.error_codes(ME) == ["UNAUTHENTICATED"]
    assert colleague.data(ME)["me"]["email"] != email  # another user's sessions stand
    assert admin.login(email).data(TENANT, {"id": tenant})["tenant"]["id"] == tenant  # signing in again works


def test_a_password_change_needs_the_current_one_and_revokes_every_earlier_token(admin: Client, tenant: str) -> None:
    email = grant(admin, tenant, "CLIENT_REVIEWER")
    person, other_session = admin.login(email), admin.login(email)

    wrong = person.data(CHANGE, {"i": {"currentPassword": "not my password", "newPassword": "a new passphrase"}})
    assert wrong["changePassword"] == {"session": None, "consistent": True, "userErrors": [{
        "code": "BAD_USER_INPUT", "field": ["input", "currentPassword"], "message": "the current password is wrong"}]}
    short = person.data(CHANGE, {"i": {"currentPassword": PASSWORD, "newPassword": "short"}})["changePassword"]
    assert short["session"] is None
    assert [e["field"] for e in short["userErrors"]] == [["input", "newPassword"]]
    # Neither refusal changed anything
    assert person.data(ME)["me"]["email"] == email
    assert admin.login(email).data(ME)["me"]["email"] == email

    new = "another correct horse battery"
    changed = person.data(CHANGE, {"i": {"currentPassword": PASSWORD, "newPassword": new}})["changePassword"]
    assert changed["userErrors"] == []
    assert changed["session"]["user"] == {"email": email}
    assert Client(person.url, changed["session"]["accessToken"]).data(ME)["me"]["email"] == email
    assert person.error_codes(ME) == ["UNAUTHENTICATED"]
    assert other_session.error_codes(ME) == ["UNAUTHENTICATED"]
    with pytest.raises(GraphQLError):
        admin.login(email, wait=0)
    assert admin.login(email, new).data(ME)["me"]["email"] == email


def test_an_api_key_acts_as_its_user_until_revoked_and_only_admins_manage_them(
    admin: Client, tenant: str, other_agency: Client, database_url: str
) -> None:
    cm = admin.login(grant(admin, tenant, "COMMUNITY_MANAGER"))
    me = cm.data(ME)["me"]
    issue = {"i": {"userId": me["id"], "name": "Serveur du front"}}

    # Only agency admins issue, list and revoke keys
    assert cm.error_codes(ISSUE, issue) == ["FORBIDDEN"]
    assert cm.error_codes(KEYS) == ["FORBIDDEN"]
    # A user of another agency is not found; a blank name is refused, naming it; nothing is issued by either
    foreign_user = other_agency.data(ME)["me"]["id"]
    assert admin.error_codes(ISSUE, {"i": {"userId": foreign_user, "name": "x"}}) == ["NOT_FOUND"]
    blank = admin.data(ISSUE, {"i": {"userId": me["id"], "name": "  "}})["issueApiKey"]
    assert (blank["apiKey"], blank["secret"]) == (None, None)
    assert [e["field"] for e in blank["userErrors"]] == [["input", "name"]]
    before = admin.data(KEYS)["apiKeys"]

    issued = admin.data(ISSUE, issue)["issueApiKey"]
    assert issued["userErrors"] == []
    key = issued["apiKey"]
    assert key["name"] == "Serveur du front"
    assert key["active"] is True
    assert key["user"] == me
    secret = issued["secret"]
    assert secret.startswith("pvk_")
    listed = admin.data(KEYS)["apiKeys"]
    assert listed[0] == {"id": key["id"], "name": "Serveur du front", "active": True, "user": {"email": me["email"]}}
    assert len(listed) == len(before) + 1
    assert secret.split(".", 1)[1] not in str(listed)

    # The key acts as its user, with that user's roles (a community manager of one tenant)
    server = Client(admin.url, secret)
    assert server.data(ME)["me"] == me
    assert server.data(TENANT, {"id": tenant})["tenant"]["id"] == tenant
    assert server.error_codes(ISSUE, issue) == ["FORBIDDEN"]
    # The secret is nowhere in the event store, in clear
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM parvis_events WHERE position(%s in convert_from(state, 'UTF8')) > 0",
            (secret.split(".", 1)[1],),
        ).fetchone()
    assert stored == (0,)

    # Revoked: refused at once; revoking again names the field; another agency's key id is not found
    assert cm.error_codes(REVOKE, {"i": {"apiKeyId": key["id"]}}) == ["FORBIDDEN"]
    revoked = admin.data(REVOKE, {"i": {"apiKeyId": key["id"], "reason": "server replaced"}})["revokeApiKey"]
    assert revoked == {"apiKey": {"id": key["id"], "name": "Serveur du front", "active": False}, "secret": None,
                       "userErrors": [], "consistent": True}
    assert server.error_codes(ME) == ["UNAUTHENTICATED"]
    again = admin.data(REVOKE, {"i": {"apiKeyId": key["id"]}})["revokeApiKey"]
    assert again["userErrors"] == [
        {"code": "INVALID_TRANSITION", "field": ["input", "apiKeyId"], "message": "this API key is already revoked"}]
    other_agency_id = ids.raw(other_agency.data("{ agency { id } }")["agency"]["id"], "Agency")
    foreign_key = ids.encode("ApiKey", f"{other_agency_id}/apikey/{uuid.uuid4().hex}")
    assert admin.error_codes(REVOKE, {"i": {"apiKeyId": foreign_key}}) == ["NOT_FOUND"]
    assert cm.data(ME)["me"] == me  # the user's own sessions are not the key's


def test_a_revoked_membership_ends_access_to_the_tenant_over_http(admin: Client, tenant: str) -> None:
    viewer = admin.login(grant(admin, tenant, "CLIENT_VIEWER"))
    assert viewer.data(TENANT, {"id": tenant})["tenant"]["id"] == tenant
    user_id = viewer.data(ME)["me"]["id"]
    revoked: dict[str, Any] = admin.data(REVOKE_MEMBERSHIP, {"i": {
        "userId": user_id, "role": "CLIENT_VIEWER", "tenantId": tenant, "reason": "left the NGO"}})["revokeMembership"]
    assert revoked["userErrors"] == []
    assert revoked["consistent"] is True
    # The same token, the very next request: the tenant is not theirs to see any more
    assert viewer.data(TENANT, {"id": tenant})["tenant"] is None
    assert viewer.data("{ tenants { totalCount } }")["tenants"]["totalCount"] == 0
