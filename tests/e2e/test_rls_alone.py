"""With the resolver-level filters switched off, PostgreSQL row-level security alone keeps tenants apart."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.support import PASSWORD, Client

Q_TENANT = "query($id: ID!) { tenant(id: $id) { name channels { handle } members { role } } }"
Q_ALL = "{ tenants(first: 100) { totalCount edges { node { id name } } } }"


@pytest.fixture(scope="module")
def unfiltered_api(settings: Any, server: str) -> Iterator[TestClient]:
    """The API app in-process, with every resolver-level tenant filter disabled."""
    from api.app import create_app
    from api.context import ApiConfig
    from parvis import wiring

    config = ApiConfig(development=True, resolver_filters=False)
    app = create_app(
        config,
        database_url=settings.database_url,
        domain_factory=lambda: wiring.domain(settings),
        secrets=wiring.secret_box(settings),
        token_key=wiring.token_key(settings),
        token_ttl=300,
        read_models=wiring.read_model_names(),
        pool_size=2,
    )
    with TestClient(app) as client:
        yield client


def ask(api: TestClient, token: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = api.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers={"authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_row_level_security_alone_blocks_foreign_reads(admin: Client, unfiltered_api: TestClient) -> None:
    create = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
    a = admin.data(create, {"i": {"name": "RLS secret tenant", "kind": "BRAND", "timezone": "UTC"}})
    a_id = a["createTenant"]["tenant"]["id"]
    admin.data(
        "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } } }",
        {"i": {"tenantId": a_id, "platform": "X", "handle": "@rls-secret-handle"}},
    )
    b = admin.data(create, {"i": {"name": "RLS other tenant", "kind": "NGO", "timezone": "UTC"}})
    b_id = b["createTenant"]["tenant"]["id"]
    email = f"viewer-{uuid.uuid4().hex[:6]}@rls.test"
    admin.data(
        "mutation($i: GrantMembershipInput!) { grantMembership(input: $i) { userErrors { code } } }",
        {"i": {"email": email, "role": "CLIENT_VIEWER", "tenantId": b_id, "password": PASSWORD}},
    )
    outsider = admin.login(email)
    assert outsider.token
    own = ask(unfiltered_api, outsider.token, Q_TENANT, {"id": b_id})
    assert own["data"]["tenant"]["name"] == "RLS other tenant"
    foreign = ask(unfiltered_api, outsider.token, Q_TENANT, {"id": a_id})
    assert foreign["data"] == {"tenant": None}
    listing = ask(unfiltered_api, outsider.token, Q_ALL)
    assert [e["node"]["name"] for e in listing["data"]["tenants"]["edges"]] == ["RLS other tenant"]
    assert listing["data"]["tenants"]["totalCount"] == 1
    node = ask(unfiltered_api, outsider.token, "query($id: ID!) { node(id: $id) { id } }", {"id": a_id})
    assert node["data"] == {"node": None}
    update = "mutation($i: UpdateTenantInput!) { updateTenant(input: $i) { tenant { name } } }"
    refused = ask(unfiltered_api, outsider.token, update, {"i": {"tenantId": a_id, "name": "x"}})
    assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    everything = json.dumps([foreign, listing, node, refused])
    assert "RLS secret tenant" not in everything
    assert "@rls-secret-handle" not in everything
