"""Abuse limits of a running server: cost, depth, aliases, tokens, batches, body size, rate limits, login
throttling, slow clients, forged, expired and revoked tokens, WebSockets outliving their token.

The session server runs with the default limits (rate limits relaxed by tests/support.py); the rate limits and
time-outs are tested on servers of their own with tight settings, sharing the session's database and projector.
Each client of those tests calls from its own loopback address (127.0.0.x), so that the per-address limits of
one test do not spill into another."""

from __future__ import annotations

import asyncio
import base64
import json
import select
import socket
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import asyncpg
import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import PASSWORD, Client, free_port, parvis, process_env, stop, wait_http

ME = "{ me { email } }"
WS = ["graphql-transport-ws"]


# --- helpers -------------------------------------------------------------------------------------------------


@contextmanager
def api_only(database_url: str, redis_url: str, **extra: str) -> Iterator[str]:
    """`parvis serve` alone on the session's database (whose projector the `server` fixture runs), with its own
    Redis namespace, so that its rate-limit counters start from zero."""
    port = free_port()
    env = process_env(database_url, redis_url, PARVIS_QUEUE_NAMESPACE=f"abuse-{uuid.uuid4().hex[:8]}", **extra)
    proc = parvis("serve", "--port", str(port), env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        stop([proc], timeout=15)


@pytest.fixture
def clients() -> Iterator[Any]:
    """Clients calling from a given loopback address (each test its own)."""
    opened: list[httpx.Client] = []

    def make(url: str, address: str, token: str | None = None) -> Client:
        http = httpx.Client(timeout=30, transport=httpx.HTTPTransport(local_address=address))
        opened.append(http)
        return Client(url, token, http)

    yield make
    for http in opened:
        http.close()


def login(client: Client, email: str, password: str = PASSWORD) -> dict[str, Any]:
    return client.execute(
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
        {"e": email, "p": password},
    )


def token_of(client: Client, email: str) -> str:
    body = login(client, email)
    assert not body.get("errors"), body
    return str(body["data"]["login"]["accessToken"])


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


def host_port(url: str) -> tuple[str, int]:
    parts = urlparse(url)
    assert parts.hostname
    assert parts.port
    return parts.hostname, parts.port


def trickle(url: str, head: bytes, drip: bytes, seconds: float) -> tuple[float, bytes]:
    """Send `head`, then `drip` a byte every 0.2 s: (seconds until the server closed or answered, what it sent)."""
    start = time.monotonic()
    with socket.create_connection(host_port(url), timeout=5) as sock:
        sock.sendall(head)
        received = b""
        for byte in drip * 1000:
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                chunk = sock.recv(65536)
                received += chunk
                if not chunk or b"\r\n\r\n" in received:
                    break
            if time.monotonic() - start > seconds:
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # closed by the server
                break
        return time.monotonic() - start, received


def claims(agency: dict[str, Any], **changes: Any) -> dict[str, Any]:
    # As the server issues them: `iat` with milliseconds (a whole second could fall before the user's creation
    # a moment ago, and the token would rightly be refused as issued before it).
    now = time.time()
    base = {"sub": agency["admin"], "agy": agency["key"], "iat": int(now * 1000) / 1000, "exp": int(now) + 600,
            "typ": "access"}
    base["jti"] = uuid.uuid4().hex
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict[str, Any], key: Any, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about short HMAC keys: forging is the point here
        return jwt.encode(payload, key, algorithm=algorithm)


def unsigned(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


@pytest.fixture(scope="module")
def tenant_id(admin: Client) -> str:
    data = admin.data(
        "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }",
        {"i": {"name": "Abuse limits", "kind": "NGO", "timezone": "Europe/Paris"}},
    )
    return str(data["createTenant"]["tenant"]["id"])


# --- query cost, depth, aliases, tokens, batches, body size (default limits) -------------------------------------

NESTED = """query($n: Int!) { tenants(first: $n) { edges { node {
  posts(first: $n) { edges { node { id variants { channel { id } } } } } } } } }"""


def test_an_operation_over_the_cost_limit_is_refused_before_it_runs(admin: Client) -> None:
    body = admin.execute(NESTED, {"n": 100})
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["cost"] > error["extensions"]["maxCost"] == 10_000
    assert body["extensions"]["sqlQueries"] == 0  # refused before any resolver ran


def test_the_cost_multiplies_page_sizes_taken_from_variables(admin: Client) -> None:
    assert not admin.execute(NESTED, {"n": 5}).get("errors")
    assert codes(admin.execute(NESTED, {"n": 30})) == ["QUERY_TOO_COMPLEX"]  # 19,891 (n=5: 566)


def test_a_request_refused_by_a_limit_is_a_400_for_graphql_response_clients(admin: Client) -> None:
    response = admin.http.post(
        admin.url,
        json={"query": NESTED, "variables": {"n": 100}},
        headers={"authorization": f"Bearer {admin.token}", "accept": "application/graphql-response+json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/graphql-response+json")
    assert "data" not in response.json()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{ me { " + "memberships { user { " * 7 + "email" + " } }" * 7 + " } }", "exceeds maximum operation depth"),
        ("{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }", "aliases found"),
        ("{ " + "__typename " * 2001 + "}", "Document contains more than"),
    ],
    ids=["depth", "aliases", "tokens"],
)
def test_depth_aliases_and_tokens_over_their_limits_are_refused(admin: Client, document: str, message: str) -> None:
    body = admin.execute(document)
    assert codes(body) == ["QUERY_TOO_COMPLEX"], body
    assert message in body["errors"][0]["message"]


def test_batched_operations_are_refused(admin: Client) -> None:
    batch = [{"query": ME}, {"query": ME}]
    response = admin.http.post(admin.url, json=batch, headers={"authorization": f"Bearer {admin.token}"})
    assert response.status_code == 400
    assert "atching" in response.text  # "Batching is not enabled"


def test_a_body_over_the_size_limit_is_refused_with_413(admin: Client) -> None:
    padding = "x" * (8 * 1024 * 1024 + 1)
    response = admin.http.post(
        admin.url,
        content=json.dumps({"query": ME, "variables": {"padding": padding}}),
        headers={"content-type": "application/json", "authorization": f"Bearer {admin.token}"},
    )
    assert response.status_code == 413


def test_a_subscription_over_plain_http_is_a_request_error(admin: Client, tenant_id: str) -> None:
    body = admin.execute("subscription($t: ID!) { history(tenantId: $t) { type } }", {"t": tenant_id})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "WebSocket" in body["errors"][0]["message"]


# --- tokens: forged, expired, revoked; WebSockets outliving their token ---------------------------------------


def forged_tokens(agency: dict[str, Any], settings: Any) -> dict[str, str]:
    from parvis.wiring import checkpoint_public_key, token_key

    key = token_key(settings)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    now = int(time.time())
    return {
        "alg none": unsigned(claims(agency)),
        "HS256 with another key": signed(claims(agency), b"k" * 32),
        "HS256 with the published checkpoint public key": signed(claims(agency), checkpoint_public_key(settings)),
        "RS256 with some RSA key": signed(claims(agency), pem, "RS256"),
        "HS512 with the server's key": signed(claims(agency), key, "HS512"),
        "no expiry": signed(claims(agency, exp=None), key),
        "not an access token": signed(claims(agency, typ="refresh"), key),
        "expired": signed(claims(agency, iat=now - 1200, exp=now - 600), key),
    }


def test_forged_and_expired_access_tokens_are_refused(
    server: str, admin: Client, agency: dict[str, Any], settings: Any
) -> None:
    from parvis.wiring import token_key

    # The forging itself is right: the same claims signed the server's way are accepted.
    genuine = Client(server, signed(claims(agency), token_key(settings)))
    assert genuine.data(ME)["me"]["email"] == agency["email"]
    for name, token in forged_tokens(agency, settings).items():
        body = Client(server, token).execute(ME)
        assert codes(body) == ["UNAUTHENTICATED"], (name, body)


def test_a_revoked_token_is_refused_and_a_new_login_works(
    server: str, admin: Client, tenant_id: str, domain: Any
) -> None:
    email = f"revoked-{uuid.uuid4().hex[:6]}@example.test"
    granted = admin.data(
        "mutation($i: GrantMembershipInput!) { grantMembership(input: $i) { userErrors { code } } }",
        {"i": {"email": email, "role": "CLIENT_VIEWER", "tenantId": tenant_id, "password": PASSWORD}},
    )
    assert granted["grantMembership"]["userErrors"] == []
    viewer = admin.login(email)
    assert viewer.data(ME)["me"]["email"] == email
    assert viewer.token
    domain.revoke_tokens(jwt.decode(viewer.token, options={"verify_signature": False})["sub"])
    deadline = time.monotonic() + 10
    while not codes(body := viewer.execute(ME)) and time.monotonic() < deadline:
        time.sleep(0.1)  # until the revocation is projected
    assert codes(body) == ["UNAUTHENTICATED"]  # the same token worked before the revocation
    again = admin.login(email)  # issued right after the revocation, in the same second maybe: valid
    assert again.data(ME)["me"]["email"] == email


async def test_an_open_websocket_is_closed_with_4403_when_its_token_expires(
    server: str, agency: dict[str, Any], settings: Any, tenant_id: str
) -> None:
    from parvis.wiring import token_key

    token = signed(claims(agency, exp=int(time.time()) + 3), token_key(settings))
    opened = time.monotonic()
    async with websockets.connect(server.replace("http://", "ws://"), subprotocols=WS) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        subscribe = {"query": "subscription($t: ID!) { history(tenantId: $t) { type } }", "variables": {"t": tenant_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)  # no event comes: the next frame is the close
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403
    assert 1.5 < time.monotonic() - opened < 8


async def open_subscription(server: str, token: str, tenant_id: str) -> Any:
    ws = await websockets.connect(server.replace("http://", "ws://"), subprotocols=WS)  # type: ignore[list-item]
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    subscribe = {"query": "subscription($t: ID!) { postUpdates(tenantId: $t) { id } }", "variables": {"t": tenant_id}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
    return ws


async def closing_code(ws: Any, within: float = 10) -> int | None:
    """The code the server closes the socket with (events that come first are skipped); None: still open."""
    try:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    except TimeoutError:
        return None
    finally:
        await ws.close()


async def test_an_open_websocket_is_closed_with_4403_when_its_token_or_its_role_is_revoked(
    server: str, admin: Client, tenant_id: str, domain: Any
) -> None:
    revoke = "mutation($i: RevokeMembershipInput!) { revokeMembership(input: $i) { userErrors { code } } }"
    grant = "mutation($i: GrantMembershipInput!) { grantMembership(input: $i) { userErrors { code } } }"
    viewers = []
    for name in ("token", "role", "kept"):
        email = f"ws-{name}-{uuid.uuid4().hex[:6]}@example.test"
        body = admin.data(grant, {"i": {"email": email, "role": "CLIENT_VIEWER", "tenantId": tenant_id,
                                        "password": PASSWORD}})
        assert body["grantMembership"]["userErrors"] == []
        viewer = admin.login(email)
        assert viewer.token
        viewers.append((viewer, jwt.decode(viewer.token, options={"verify_signature": False})["sub"],
                        viewer.data("{ me { id } }")["me"]["id"]))
    (by_token, token_user, _), (by_role, _, role_user), (kept, _, _) = viewers

    # Given three viewers subscribed to the tenant's history, with valid tokens
    sockets = [await open_subscription(server, str(v.token), tenant_id) for v in (by_token, by_role, kept)]

    # When the first one's tokens are revoked and the second one loses the role on the tenant
    domain.revoke_tokens(token_user)
    body = admin.data(revoke, {"i": {"userId": role_user, "role": "CLIENT_VIEWER", "tenantId": tenant_id}})
    assert body["revokeMembership"]["userErrors"] == []

    # Then their sockets are closed with 4403, and the third one's stays open
    assert await closing_code(sockets[0]) == 4403
    assert await closing_code(sockets[1]) == 4403
    assert await closing_code(sockets[2], within=3) is None


async def test_operations_over_a_websocket_hold_no_database_connection_once_done(
    server: str, admin: Client, tenant_id: str, settings: Any
) -> None:
    # Given a socket kept open after a query, a subscription refused by the role matrix and one that ended
    email = f"ws-held-{uuid.uuid4().hex[:6]}@example.test"
    grant = "mutation($i: GrantMembershipInput!) { grantMembership(input: $i) { userErrors { code } } }"
    admin.data(grant, {"i": {"email": email, "role": "CLIENT_VIEWER", "tenantId": tenant_id, "password": PASSWORD}})
    viewer = admin.login(email)
    async with websockets.connect(server.replace("http://", "ws://"), subprotocols=WS) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {viewer.token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        history = {"query": "subscription($t: ID!) { history(tenantId: $t) { type } }", "variables": {"t": tenant_id}}
        for i, payload in enumerate([{"query": ME}, history]):
            await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": payload}))
            while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] not in ("complete", "error"):
                pass  # the query's result, or the refusal as a result with errors, comes before its end
        # Then no read transaction of the API stays open on the database meanwhile (each held a pooled connection:
        # a few such sockets would take the whole pool)
        async def idle_in_transaction() -> int:
            conn = await asyncpg.connect(settings.database_url)
            try:
                return int(await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'idle in transaction' AND state_change < now() - interval '1 second'"))
            finally:
                await conn.close()

        await asyncio.sleep(1.5)  # what counts is a transaction left idle over a second
        for _ in range(50):
            if (held := await idle_in_transaction()) == 0:
                break
            await asyncio.sleep(0.2)
        assert held == 0


async def test_an_expired_token_cannot_open_a_websocket(server: str, agency: dict[str, Any], settings: Any) -> None:
    from parvis.wiring import token_key

    now = int(time.time())
    token = signed(claims(agency, iat=now - 1200, exp=now - 600), token_key(settings))
    async with websockets.connect(server.replace("http://", "ws://"), subprotocols=WS) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


# --- rate limits, login throttling, slow clients (a server with tight settings) ----------------------------------

STRICT = {
    "PARVIS_RATE_LIMIT_PER_IP": "30/minute",
    "PARVIS_RATE_LIMIT_PER_TOKEN": "10/minute",
    "PARVIS_LOGIN_RATE_LIMIT": "3/minute",
    "PARVIS_HEADER_TIMEOUT_SECONDS": "1",
    "PARVIS_BODY_TIMEOUT_SECONDS": "2",
    "PARVIS_MAX_CONNECTIONS": "20",
    "PARVIS_WS_INIT_TIMEOUT_SECONDS": "1",
}


@pytest.fixture(scope="module")
def strict(admin: Client, settings: Any, redis_url: str) -> Iterator[str]:
    with api_only(settings.database_url, redis_url, **STRICT) as url:
        yield url


def test_requests_over_the_per_token_limit_get_429_and_another_token_does_not(
    strict: str, clients: Any, agency: dict[str, Any]
) -> None:
    here = clients(strict, "127.0.0.5")
    first = clients(strict, "127.0.0.5", token_of(here, agency["email"]))
    second = clients(strict, "127.0.0.5", token_of(clients(strict, "127.0.0.6"), agency["email"]))
    for _ in range(10):
        assert first.raw(ME).status_code == 200
    refused = first.raw(ME)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert codes(refused.json()) == ["RATE_LIMITED"]
    assert second.raw(ME).status_code == 200  # same address, another token


async def test_requests_over_the_per_address_limit_get_429_and_so_does_a_websocket_handshake(
    strict: str, clients: Any
) -> None:
    here = clients(strict, "127.0.0.7")
    statuses = [(await asyncio.to_thread(here.raw, "{ __typename }")).status_code for _ in range(31)]
    assert statuses == [200] * 30 + [429]
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            strict.replace("http://", "ws://"),
            subprotocols=WS,  # type: ignore[list-item]
            local_addr=("127.0.0.7", 0),
        ):
            pass
    assert refused.value.response.status_code == 429
    assert clients(strict, "127.0.0.8").raw("{ __typename }").status_code == 200  # another address


async def test_operations_over_a_websocket_count_against_its_token(
    strict: str, clients: Any, agency: dict[str, Any]
) -> None:
    token = await asyncio.to_thread(token_of, clients(strict, "127.0.0.9"), agency["email"])
    results = []
    async with websockets.connect(
        strict.replace("http://", "ws://"),
        subprotocols=WS,  # type: ignore[list-item]
        local_addr=("127.0.0.9", 0),
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for i in range(11):
            await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": {"query": ME}}))
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            results.append(message)
            if message["type"] == "next":
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "complete"
    assert [m["type"] for m in results] == ["next"] * 10 + ["error"]
    assert results[-1]["payload"][0]["extensions"]["code"] == "RATE_LIMITED"


def test_failed_logins_are_throttled_per_email_and_address(strict: str, clients: Any, agency: dict[str, Any]) -> None:
    here, elsewhere = clients(strict, "127.0.0.3"), clients(strict, "127.0.0.4")
    for email in (agency["email"], "nobody@nowhere.test"):  # the same answers for an unknown address
        for _ in range(3):
            assert codes(login(here, email, "wrong password")) == ["UNAUTHENTICATED"]
        throttled = here.raw(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
            {"e": email, "p": PASSWORD},
        )
        assert codes(throttled.json()) == ["RATE_LIMITED"], email
        assert int(throttled.headers["retry-after"]) >= 1
    assert not login(elsewhere, agency["email"]).get("errors")  # the same e-mail from another address


def test_a_client_that_trickles_its_headers_is_cut_off(strict: str) -> None:
    elapsed, received = trickle(strict, b"POST /graphql HTTP/1.1\r\nHost: parvis\r\nX-Slow: ", b"abcdefgh", 8)
    assert received == b""
    assert elapsed < 4  # PARVIS_HEADER_TIMEOUT_SECONDS=1, with room for a busy machine


def test_a_client_that_trickles_its_body_is_cut_off(strict: str) -> None:
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: parvis\r\ncontent-type: application/json\r\n"
        b'content-length: 4000\r\n\r\n{"query": "'
    )
    elapsed, _ = trickle(strict, head, b"          ", 10)
    assert elapsed < 6  # PARVIS_BODY_TIMEOUT_SECONDS=2


def test_idle_connections_past_the_cap_get_503_until_the_deadline_closes_them(strict: str, clients: Any) -> None:
    address = host_port(strict)
    idle = [socket.create_connection(address, timeout=5) for _ in range(20)]
    try:
        here = clients(strict, "127.0.0.10")
        assert here.raw("{ __typename }").status_code == 503  # PARVIS_MAX_CONNECTIONS=20
        time.sleep(2)  # idle connections are closed after PARVIS_HEADER_TIMEOUT_SECONDS=1
        assert all(sock.recv(1) == b"" for sock in idle)
        assert here.raw("{ __typename }").status_code == 200
    finally:
        for sock in idle:
            sock.close()


async def test_a_websocket_without_connection_init_is_closed(strict: str) -> None:
    async with websockets.connect(strict.replace("http://", "ws://"), subprotocols=WS) as ws:  # type: ignore[list-item]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4408  # after PARVIS_WS_INIT_TIMEOUT_SECONDS=1


def test_a_request_without_a_response_in_time_gets_503(admin: Client, settings: Any, redis_url: str) -> None:
    slow = {"PARVIS_REQUEST_TIMEOUT_SECONDS": "2", "PARVIS_BODY_TIMEOUT_SECONDS": "30"}
    with api_only(settings.database_url, redis_url, **slow) as url:
        head = (
            b"POST /graphql HTTP/1.1\r\nHost: parvis\r\ncontent-type: application/json\r\n"
            b'content-length: 4000\r\n\r\n{"query": "'
        )
        elapsed, received = trickle(url, head, b"          ", 10)
    assert received.startswith(b"HTTP/1.1 503"), received
    assert 1.5 < elapsed < 6
