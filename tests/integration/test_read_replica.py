"""Read replicas (PARVIS_READ_DATABASE_URL): queries go to a hot standby, and read-your-writes still holds.

A real streaming replica: an embedded primary and a standby copied from it with pg_basebackup (the machine's
PostgreSQL, when named, takes no replication connections). The API is started on both; replay on the standby is
paused to make it fall behind, on purpose, and resumed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_settings, migrated
from tests.support import PASSWORD, Client, eventually, free_port, running

pytestmark = pytest.mark.slow

CREATE = """mutation($i: CreateTenantInput!) { createTenant(input: $i) {
  tenant { id name } position consistent userErrors { message } } }"""
TENANTS = "{ tenants(first: 100) { edges { node { id name } } } }"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(primary URL, standby URL): a streaming replication pair of embedded servers."""
    from parvis.embedded import start_postgres

    base = tmp_path_factory.mktemp("replication")
    primary = start_postgres(base / "primary", port=free_port())
    try:
        standby = start_postgres(base / "standby", port=free_port(), standby_of=primary.url)
        try:
            yield primary.url, standby.url
        finally:
            standby.stop()
    finally:
        primary.stop()


@pytest.fixture(scope="module")
def primary(pair: tuple[str, str], redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The primary, migrated, with two agencies (admins a@ and b@replica.test)."""
    from parvis import wiring

    settings = make_settings(pair[0], redis_url, tmp_path_factory.mktemp("replica-data"))
    asyncio.run(migrated(settings))
    domain = wiring.domain(settings)
    try:
        for email in ("a@replica.test", "b@replica.test"):
            domain.register_agency(f"Agence {email[0].upper()}", email, PASSWORD)
    finally:
        domain.close()
    return pair[0]


def replayed(primary: str, standby: str) -> bool:
    """Whether the standby has replayed everything the primary has written so far."""
    with psycopg.connect(primary, autocommit=True) as p, psycopg.connect(standby, autocommit=True) as s:
        lsn = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        return bool(s.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0])  # type: ignore[index]


def replay(standby: str, *, paused: bool) -> None:
    with psycopg.connect(standby, autocommit=True) as s:
        s.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")


def tenant_on(url: str, name: str) -> bool:
    from projections.directory import Directory

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {Directory.tables['tenants']} WHERE name = %s", (name,)).fetchone()
        return bool(row and row[0])


def reads(graphql_url: str) -> dict[tuple[str, str], float]:
    """The API's read sessions so far, by (database, reason), from its /metrics."""
    text = httpx.get(graphql_url.replace("/graphql", "/metrics"), timeout=10).text
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "parvis_read_sessions":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[(sample.labels["database"], sample.labels["reason"])] = sample.value
    return counts


def more(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {key: after[key] - before.get(key, 0) for key in after if after[key] > before.get(key, 0)}


def names(client: Client, **headers: str) -> set[str]:
    body = client.raw(TENANTS, **headers).json()
    assert not body.get("errors"), body
    return {e["node"]["name"] for e in body["data"]["tenants"]["edges"]}


def test_queries_go_to_the_replica_unless_it_is_behind_what_the_caller_must_see(
    pair: tuple[str, str], primary: str, redis_url: str
) -> None:
    standby = pair[1]
    with running(primary, redis_url, PARVIS_READ_DATABASE_URL=standby,
                 PARVIS_QUEUE_NAMESPACE=f"parvis-replica-{uuid.uuid4().hex[:8]}") as url:
        a, b = Client(url).login("a@replica.test"), Client(url).login("b@replica.test")
        first = a.data(CREATE, {"i": {"name": "Avant la pause", "kind": "NGO", "timezone": "Europe/Paris"}})
        assert first["createTenant"]["consistent"], first
        eventually(lambda: replayed(primary, standby))

        # Given a replica that has everything: a caller's reads go there, and see their own earlier write.
        before = reads(url)
        assert names(a) == {"Avant la pause"}
        assert more(before, reads(url)) == {("replica", "caught up"): 1}

        # When the replica stops replaying (it falls behind) and A writes
        replay(standby, paused=True)
        try:
            written = a.data(CREATE, {"i": {"name": "Pendant la pause", "kind": "BRAND", "timezone": "Europe/Paris"}})
            position = written["createTenant"]["position"]
            assert written["createTenant"]["consistent"], written
            assert tenant_on(primary, "Pendant la pause")
            assert not tenant_on(standby, "Pendant la pause")

            # Then A reads its write all the same: the primary answered, as the replica is behind A's last write
            before = reads(url)
            assert names(a) == {"Avant la pause", "Pendant la pause"}
            # and so does a new session of A (the last write is kept per user, for every API process)
            assert names(Client(url).login("a@replica.test")) == {"Avant la pause", "Pendant la pause"}
            assert more(before, reads(url)) == {("primary", "replica behind"): 2}

            # B, who wrote nothing, is answered by the replica; asking for A's position sends B to the primary too.
            before = reads(url)
            assert names(b) == set()
            assert more(before, reads(url)) == {("replica", "caught up"): 1}
            before = reads(url)
            assert names(b, **{"Parvis-Min-Position": position}) == set()
            assert names(b, **{"Parvis-Min-Position": "not a position"}) == set()  # ignored: the replica answers
            assert more(before, reads(url)) == {("primary", "replica behind"): 1, ("replica", "caught up"): 1}
        finally:
            replay(standby, paused=False)

        # When the replica has caught up again, it answers A.
        eventually(lambda: tenant_on(standby, "Pendant la pause"))
        before = reads(url)
        assert names(a) == {"Avant la pause", "Pendant la pause"}
        assert more(before, reads(url)) == {("replica", "caught up"): 1}


def test_with_the_replica_down_the_primary_answers(primary: str, redis_url: str) -> None:
    # A replica address where nothing listens: every read falls back to the primary, none fails.
    nowhere = f"postgresql://parvis@127.0.0.1:{free_port()}/parvis"
    with running(primary, redis_url, PARVIS_READ_DATABASE_URL=nowhere,
                 PARVIS_QUEUE_NAMESPACE=f"parvis-replica-{uuid.uuid4().hex[:8]}") as url:
        a = Client(url).login("a@replica.test")
        a.data(CREATE, {"i": {"name": "Sans réplique", "kind": "NGO", "timezone": "Europe/Paris"}})
        before = reads(url)
        assert "Sans réplique" in names(a)
        assert more(before, reads(url)) == {("primary", "replica unreachable"): 1}
