"""The directory over HTTP and WebSocket, against a running server, as the agencies' front ends call it."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import websockets

from tests.support import PASSWORD, Client

CREATE = """
mutation($input: CreateTenantInput!) {
  createTenant(input: $input) {
    tenant { id name kind timezone status approvalPolicy { internalApprovals clientApproval expiresAfterHours } }
    userErrors { code field message } position consistent
  }
}"""
GRANT = """
mutation($input: GrantMembershipInput!) {
  grantMembership(input: $input) {
    membership { role user { id email } tenant { id } } userErrors { code field message }
  }
}"""
TENANT = (
    "query($id: ID!) { tenant(id: $id) { id name status channels { handle health } members { role user { email } } } }"
)
HISTORY = """query($id: ID!, $f: HistoryFilter) { tenant(id: $id) {
  history(first: 100, filter: $f) { edges { node { type actor actorRole data hash position } } }
  verifyHistory { ok checkedEvents firstBadPosition } } }"""


def create_tenant(client: Client, name: str, **extra: Any) -> dict[str, Any]:
    data = client.data(CREATE, {"input": {"name": name, "kind": "NGO", "timezone": "Europe/Paris", **extra}})
    payload = data["createTenant"]
    assert payload["userErrors"] == []
    return payload  # type: ignore[no-any-return]


def grant(client: Client, tenant_id: str | None, role: str, email: str | None = None) -> str:
    email = email or f"{role.lower()}-{uuid.uuid4().hex[:6]}@example.test"
    data = client.data(GRANT, {"input": {"email": email, "role": role, "tenantId": tenant_id, "password": PASSWORD}})
    assert data["grantMembership"]["userErrors"] == [], data
    return email


@pytest.fixture(scope="module")
def two_tenants(admin: Client) -> dict[str, Any]:
    a = create_tenant(admin, "Croix-Rouge (A)")["tenant"]
    b = create_tenant(admin, "Ligue contre le tabac (B)")["tenant"]
    viewer_a = admin.login(grant(admin, a["id"], "CLIENT_VIEWER"))
    client_admin_a = admin.login(grant(admin, a["id"], "CLIENT_ADMIN"))
    auditor_a = admin.login(grant(admin, a["id"], "AUDITOR"))
    cm_b = admin.login(grant(admin, b["id"], "COMMUNITY_MANAGER"))
    return {
        "a": a,
        "b": b,
        "viewer_a": viewer_a,
        "client_admin_a": client_admin_a,
        "auditor_a": auditor_a,
        "cm_b": cm_b,
    }


@pytest.fixture(scope="module")
def other_agency(server: str, domain: Any) -> Client:
    domain.register_agency("Autre Agence", "boss@autre.test", PASSWORD)
    return Client(server).login("boss@autre.test")


def test_a_query_right_after_a_mutation_sees_its_change(admin: Client) -> None:
    payload = create_tenant(admin, "Entraide Inondations")
    assert payload["consistent"] is True
    assert int(payload["position"]) > 0
    tenant = admin.data(TENANT, {"id": payload["tenant"]["id"]})["tenant"]
    assert tenant["name"] == "Entraide Inondations"
    renamed = admin.data(
        "mutation($i: UpdateTenantInput!) { updateTenant(input: $i) { tenant { name status } userErrors { code } } }",
        {"i": {"tenantId": tenant["id"], "name": "Entraide Crues", "status": "PAUSED", "reason": "off season"}},
    )["updateTenant"]
    assert renamed == {"tenant": {"name": "Entraide Crues", "status": "PAUSED"}, "userErrors": []}
    assert admin.data(TENANT, {"id": tenant["id"]})["tenant"]["status"] == "PAUSED"


def test_bad_input_comes_back_as_user_errors_naming_the_field(admin: Client) -> None:
    data = admin.data(CREATE, {"input": {"name": "  ", "kind": "NGO", "timezone": "Europe/Paris"}})["createTenant"]
    assert data["tenant"] is None
    assert data["userErrors"] == [
        {"code": "BAD_USER_INPUT", "field": ["input", "name"], "message": "name must not be empty"}
    ]
    data = admin.data(CREATE, {"input": {"name": "X", "kind": "NGO", "timezone": "Nowhere/City"}})["createTenant"]
    assert data["userErrors"][0]["field"] == ["input", "timezone"]


def test_without_a_token_everything_but_login_is_unauthenticated(server: str) -> None:
    anonymous = Client(server)
    assert anonymous.error_codes("{ me { email } }") == ["UNAUTHENTICATED"]
    assert anonymous.error_codes("{ tenants { totalCount } }") == ["UNAUTHENTICATED"]
    assert Client(server, token="not-a-token").error_codes("{ me { email } }") == ["UNAUTHENTICATED"]
    assert Client(server, token="pvk_abc.def").error_codes("{ me { email } }") == ["UNAUTHENTICATED"]


def test_wrong_credentials_are_the_same_answer_for_unknown_emails(server: str, agency: dict[str, Any]) -> None:
    anonymous = Client(server)
    q = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    wrong = anonymous.execute(q, {"e": agency["email"], "p": "wrong password!"})
    unknown = anonymous.execute(q, {"e": "nobody@nowhere.test", "p": "wrong password!"})
    assert wrong["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert wrong["errors"][0]["message"] == unknown["errors"][0]["message"]


def test_a_wrong_role_is_forbidden_and_the_attempt_is_recorded(two_tenants: dict[str, Any], admin: Client) -> None:
    a = two_tenants["a"]
    viewer = two_tenants["viewer_a"]
    update = "mutation($i: UpdateTenantInput!) { updateTenant(input: $i) { tenant { name } } }"
    assert viewer.error_codes(update, {"i": {"tenantId": a["id"], "name": "Hacked"}}) == ["FORBIDDEN"]
    assert viewer.error_codes(CREATE, {"input": {"name": "X", "kind": "NGO", "timezone": "UTC"}}) == ["FORBIDDEN"]
    assert admin.data(TENANT, {"id": a["id"]})["tenant"]["name"] == "Croix-Rouge (A)"
    denied = admin.data(HISTORY, {"id": a["id"], "f": {"types": ["AccessDenied"]}})["tenant"]["history"]["edges"]
    assert denied
    assert denied[-1]["node"]["data"]["operation"] == "updateTenant"
    assert denied[-1]["node"]["actorRole"] == "CLIENT_VIEWER"
    # A viewer sees its tenant but not its history.
    assert viewer.data(TENANT, {"id": a["id"]})["tenant"]["name"] == "Croix-Rouge (A)"
    assert set(viewer.error_codes(HISTORY, {"id": a["id"]})) == {"FORBIDDEN"}


def test_another_tenants_objects_are_not_found(two_tenants: dict[str, Any], other_agency: Client) -> None:
    a, b = two_tenants["a"], two_tenants["b"]
    for outsider in (two_tenants["cm_b"], other_agency):
        assert outsider.data(TENANT, {"id": a["id"]}) == {"tenant": None}
        assert outsider.data("query($id: ID!) { node(id: $id) { id } }", {"id": a["id"]}) == {"node": None}
        names = [
            e["node"]["name"]
            for e in outsider.data("{ tenants(first: 100) { edges { node { name } } } }")["tenants"]["edges"]
        ]
        assert "Croix-Rouge (A)" not in names
        update = "mutation($i: UpdateTenantInput!) { updateTenant(input: $i) { tenant { name } } }"
        assert outsider.error_codes(update, {"i": {"tenantId": a["id"], "name": "Hacked"}}) == ["NOT_FOUND"]
        connect = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } } }"
        assert outsider.error_codes(connect, {"i": {"tenantId": a["id"], "platform": "X", "handle": "@h"}}) == [
            "NOT_FOUND"
        ]
        body = json.dumps(outsider.execute(HISTORY, {"id": a["id"]}))
        assert "Croix-Rouge (A)" not in body
    assert two_tenants["cm_b"].data(TENANT, {"id": b["id"]})["tenant"]["name"] == "Ligue contre le tabac (B)"


def test_a_client_admin_manages_client_users_of_its_own_tenant_only(two_tenants: dict[str, Any]) -> None:
    ca = two_tenants["client_admin_a"]
    a, b = two_tenants["a"], two_tenants["b"]
    grant(ca, a["id"], "CLIENT_REVIEWER")
    data = ca.execute(
        GRANT, {"input": {"email": "cm@x.test", "role": "COMMUNITY_MANAGER", "tenantId": a["id"], "password": PASSWORD}}
    )
    assert data["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    data = ca.execute(
        GRANT, {"input": {"email": "r@x.test", "role": "CLIENT_REVIEWER", "tenantId": b["id"], "password": PASSWORD}}
    )
    assert data["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_channels_never_show_credentials(admin: Client, two_tenants: dict[str, Any]) -> None:
    a = two_tenants["a"]
    data = admin.data(
        "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id platform handle health } "
        "userErrors { code field } } }",
        {
            "i": {
                "tenantId": a["id"],
                "platform": "MASTODON",
                "handle": "@croix@mastodon.test",
                "credentials": {"access_token": "super-secret-token-123"},
            }
        },
    )["connectChannel"]
    assert data["userErrors"] == []
    assert data["channel"]["health"] in {"UNKNOWN", "OK"}
    everything = json.dumps(admin.execute(HISTORY, {"id": a["id"]})) + json.dumps(
        admin.execute(TENANT, {"id": a["id"]})
    )
    assert "super-secret-token-123" not in everything
    assert "@croix@mastodon.test" in everything


def test_the_history_is_ordered_and_verifies(admin: Client, two_tenants: dict[str, Any]) -> None:
    auditor = two_tenants["auditor_a"]
    tenant = auditor.data(HISTORY, {"id": two_tenants["a"]["id"]})["tenant"]
    positions = [int(e["node"]["position"]) for e in tenant["history"]["edges"]]
    assert positions == sorted(positions)
    assert tenant["history"]["edges"][0]["node"]["type"] == "Created"
    assert tenant["verifyHistory"]["ok"] is True
    assert tenant["verifyHistory"]["checkedEvents"] == len(positions)


def test_an_idempotency_key_replays_the_first_result(admin: Client) -> None:
    key = uuid.uuid4().hex
    first = create_tenant(admin, "Idempotent", idempotencyKey=key)
    again = create_tenant(admin, "Idempotent", idempotencyKey=key)
    assert again["tenant"]["id"] == first["tenant"]["id"]
    assert again["position"] == first["position"]
    names = [
        e["node"]["name"]
        for e in admin.data('{ tenants(first: 100, search: "Idempotent") { edges { node { name } } } }')["tenants"][
            "edges"
        ]
    ]
    assert names == ["Idempotent"]
    other = admin.data(CREATE, {"input": {"name": "Other", "kind": "NGO", "timezone": "UTC", "idempotencyKey": key}})
    assert other["createTenant"]["userErrors"][0]["code"] == "CONFLICT"


def test_page_size_is_capped(admin: Client) -> None:
    assert admin.error_codes("{ tenants(first: 101) { totalCount } }") == ["BAD_USER_INPUT"]


async def test_the_history_subscription_streams_new_events_of_that_tenant_only(
    server: str, admin: Client, two_tenants: dict[str, Any]
) -> None:
    a, b = two_tenants["a"], two_tenants["b"]
    url = server.replace("http://", "ws://")
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {admin.token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {
                        "query": "subscription($t: ID!) { history(tenantId: $t) { type data } }",
                        "variables": {"t": a["id"]},
                    },
                }
            )
        )
        await asyncio.sleep(0.5)
        update = "mutation($i: UpdateTenantInput!) { updateTenant(input: $i) { tenant { name } } }"
        await asyncio.to_thread(admin.data, update, {"i": {"tenantId": b["id"], "name": "B renamed"}})
        await asyncio.to_thread(admin.data, update, {"i": {"tenantId": a["id"], "name": "A renamed"}})
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert message["type"] == "next"
        assert message["payload"]["data"]["history"] == {"type": "Renamed", "data": {"name": "A renamed"}}


async def test_a_bad_token_on_connection_init_closes_the_socket_with_4403(server: str) -> None:
    url = server.replace("http://", "ws://")
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer nope"}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def test_only_the_graphql_transport_ws_protocol_is_spoken(server: str) -> None:
    url = server.replace("http://", "ws://")
    async with websockets.connect(url, subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4406
