"""Every tenant's data can be distributed by tenant_id (Citus), as read from the PostgreSQL catalog of a database
laid out by the product itself: `parvis migrate`, then the tables of every projection and of the job outbox.

Distributed by tenant_id, colocated: every table with a tenant_id column (all of schema `read`), unless it is
named below as a coordinator table. Each must have tenant_id NOT NULL, of one type and collation, in its primary
key and in every unique index; no table has a foreign key, no view hides a join, and every join of two
distributed tables in the code matches their tenant_id. The tables without tenant_id are named, with the reason
each may stay as it is. deploy/SCALING.md carries the create_distributed_table calls; this test keeps it current.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support import fresh_database

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ["read", "auth", "parvis", "public"]
DISTRIBUTION_COLUMN = "tenant_id"

# Small, read on every request and written rarely, keyed by the agency's people rather than by a tenant:
# replicated to every node (create_reference_table), so joins with them stay on one node.
REFERENCE_TABLES = {
    "auth.agencies": "the agency's name and colour, read with every principal at sign-in",
    "auth.principals": "the agency's people, looked up by e-mail at sign-in, before any tenant is known",
    "auth.grants": "each person's roles per scope, read at sign-in and for every token",
    "auth.api_keys": "agency servers' keys, looked up by key id before any tenant is known",
}
# Left as plain tables on the coordinator: what follows every tenant at once, or is not a tenant's.
COORDINATOR_TABLES = {
    "public.parvis_events": "the event store: one global notification sequence that every runner follows in "
    "order; it is spread by tenant range across primaries, not by Citus (deploy/SCALING.md)",
    "parvis.tracking": "one row per projection: the runners' positions, written with each batch",
    "parvis.idempotency": "keyed by principal and idempotency key: a mutation's first result, not a tenant's data",
    "parvis.keyring": "a few keys of the whole deployment (wrapped under the master secret), read at start",
    "parvis.jobs": "the job outbox: the pump claims the due jobs of every tenant in one ORDER BY due_at ... "
    "FOR UPDATE SKIP LOCKED, which Citus does not run across shards",
}


@pytest.fixture(scope="module")
async def layout(servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A fresh database with every table the product creates (as `parvis migrate` and the runners do)."""
    from parvis import wiring
    from projections.runner import create_tables
    from tests.conftest import make_settings, migrated
    from workers.dispatcher import Dispatcher

    with fresh_database(servers[0]) as url:
        settings = make_settings(url, servers[1], tmp_path_factory.mktemp("citus"))
        await migrated(settings)
        conn = await asyncpg.connect(url)
        try:
            for projection in [*wiring.projections(settings), Dispatcher()]:
                await create_tables(conn, projection, next_=False)
        finally:
            await conn.close()
        yield url


@pytest.fixture
async def catalog(layout: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(layout)
    yield conn
    await conn.close()


async def tables(conn: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    """Every table of the product's schemas: its columns (name -> (type, collation, not null)) and relkind."""
    rows = await conn.fetch(
        """
        SELECT n.nspname || '.' || c.relname AS name, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
               coalesce(co.collname, '') AS collation, a.attnotnull
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_collation co ON co.oid = a.attcollation
        WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p')
        """,
        SCHEMAS,
    )
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        out.setdefault(r["name"], {})[r["attname"]] = (r["type"], r["collation"], r["attnotnull"])
    return out


def distributed(found: dict[str, dict[str, Any]]) -> list[str]:
    """The tables that are distributed by tenant_id: those that have it, bar the coordinator's."""
    return sorted(t for t, columns in found.items() if DISTRIBUTION_COLUMN in columns and t not in COORDINATOR_TABLES)


async def citus_problems(conn: asyncpg.Connection) -> list[str]:
    """Why the layout could not be distributed by tenant_id as planned (empty when it can)."""
    found = await tables(conn)
    chosen = distributed(found)
    problems = []
    # Every table is accounted for: distributed, or named with its reason
    for table in sorted(found):
        if table.startswith("read.") and table not in chosen:
            problems.append(f"{table}: a read model without {DISTRIBUTION_COLUMN}")
        elif table not in chosen and table not in REFERENCE_TABLES and table not in COORDINATOR_TABLES:
            problems.append(f"{table}: no {DISTRIBUTION_COLUMN}; name it as a reference or coordinator table")
    for table in sorted({*REFERENCE_TABLES, *COORDINATOR_TABLES} - set(found)):
        problems.append(f"{table}: named here, but the product no longer creates it")
    # One distribution column type and collation, never null, so that all of them can be colocated
    kinds = {found[t][DISTRIBUTION_COLUMN][:2] for t in chosen}
    if len(kinds) > 1:
        problems.append(f"{DISTRIBUTION_COLUMN} differs in type or collation between tables: {sorted(kinds)}")
    problems += [f"{t}: {DISTRIBUTION_COLUMN} may be null" for t in chosen if not found[t][DISTRIBUTION_COLUMN][2]]
    # The distribution column in the primary key and in every unique index (Citus enforces them per shard)
    indexes = await conn.fetch(
        """
        SELECT i.indrelid::regclass::text AS tbl, n.nspname || '.' || t.relname AS name,
               c.relname AS index, i.indisprimary AS primary,
               ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                     WHERE k.ord <= i.indnkeyatts) AS keys
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = ANY($1) AND i.indisunique
        """,
        SCHEMAS,
    )
    primary = {r["name"] for r in indexes if r["primary"]}
    problems += [f"{t}: no primary key" for t in chosen if t not in primary]
    for r in indexes:
        if r["name"] in chosen and DISTRIBUTION_COLUMN not in r["keys"]:
            problems.append(f"{r['name']}: unique index {r['index']} on {list(r['keys'])} lacks {DISTRIBUTION_COLUMN}")
    # No foreign keys and no exclusion constraints anywhere (none to keep colocated, none to check across nodes)
    for r in await conn.fetch(
        """
        SELECT c.conrelid::regclass::text AS tbl, c.conname, c.contype::text AS contype FROM pg_constraint c
        JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = ANY($1) AND c.contype IN ('f', 'x')
        """,
        SCHEMAS,
    ):
        problems.append(
            f"{r['tbl']}: {'foreign key' if r['contype'] == 'f' else 'exclusion constraint'} {r['conname']}"
        )
    # No view or materialized view (a join across tenants could hide in one), no trigger on a distributed table
    for r in await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY($1) AND c.relkind IN ('v', 'm')",
        SCHEMAS,
    ):
        problems.append(f"{r['name']}: a view")
    for r in await conn.fetch(
        "SELECT tgrelid::regclass::text AS tbl, tgname FROM pg_trigger WHERE NOT tgisinternal "
        "AND tgrelid::regclass::text = ANY($1)",
        chosen,
    ):
        problems.append(f"{r['tbl']}: trigger {r['tgname']} would run on each shard")
    return problems


async def test_every_tenant_table_is_distributable_by_tenant_id(catalog: asyncpg.Connection) -> None:
    found = await tables(catalog)
    # Given the layout the product creates, with every read model in it
    assert {"read.tenants", "read.posts", "read.interactions", "read.history", "parvis.author_keys"} <= set(found)
    # Then nothing stands in the way of distributing it by tenant_id
    assert await citus_problems(catalog) == []
    # And every read model is among the distributed tables
    assert {t for t in found if t.startswith("read.")} <= set(distributed(found))


async def test_the_check_refuses_a_table_that_cannot_be_distributed(catalog: asyncpg.Connection) -> None:
    # Given tables that break each rule, in a transaction that is rolled back
    tx = catalog.transaction()
    await tx.start()
    try:
        await catalog.execute(
            """
            CREATE TABLE read.bad_keys (tenant_id text NOT NULL, id text PRIMARY KEY, slug text);
            CREATE UNIQUE INDEX bad_keys_slug ON read.bad_keys (slug);
            CREATE TABLE read.bad_child (tenant_id text NOT NULL, id text, parent text REFERENCES read.bad_keys (id),
                                         PRIMARY KEY (tenant_id, id));
            CREATE TABLE read.no_tenant (id text PRIMARY KEY);
            CREATE TABLE parvis.loose (tenant_id integer, id text, PRIMARY KEY (id));
            CREATE VIEW read.joined AS SELECT k.id FROM read.bad_keys k JOIN read.bad_child c ON c.parent = k.id;
            """
        )
        problems = await citus_problems(catalog)
    finally:
        await tx.rollback()
    # Then each is named
    expected = [
        "read.bad_keys: unique index bad_keys_pkey",
        "read.bad_keys: unique index bad_keys_slug",
        "read.bad_child: foreign key",
        "read.no_tenant: a read model without tenant_id",
        "parvis.loose: unique index",
        "tenant_id differs in type or collation",
        "parvis.loose: tenant_id may be null",
        "read.joined: a view",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)


def _sources() -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for folder in ("api", "projections", "workers", "parvis")
        for path in (ROOT / folder).rglob("*.py")
    }


_JOIN = re.compile(r"\bJOIN\s+(read\.\w+|parvis\.\w+)\s+(?:AS\s+)?\w*\s*(ON|USING)\b(.{0,300})", re.DOTALL)
_CLAUSE_END = re.compile(r"\b(WHERE|JOIN|ORDER BY|GROUP BY|LIMIT|UNION)\b|\"|'")


async def test_every_join_of_two_tenant_tables_matches_their_tenant(catalog: asyncpg.Connection) -> None:
    # Given the distributed tables, and every SQL join in the code that names one of them
    chosen = set(distributed(await tables(catalog)))
    joins = []
    for path, text in _sources().items():
        for match in _JOIN.finditer(text):
            if match.group(1) in chosen:
                condition = _CLAUSE_END.split(match.group(3), maxsplit=1)[0]
                joins.append((path, match.group(1), condition.strip()))
    assert joins, "the code joins tenant tables: the pattern must find those joins"
    # Then each join condition matches the tenant, so that it runs on the node holding that tenant
    unmatched = [j for j in joins if DISTRIBUTION_COLUMN not in j[2]]
    assert unmatched == []


async def test_the_scaling_notes_distribute_exactly_these_tables(catalog: asyncpg.Connection) -> None:
    notes = (ROOT / "deploy" / "SCALING.md").read_text()
    chosen = distributed(await tables(catalog))
    written = set(re.findall(r"create_distributed_table\('([\w.]+)', '(\w+)'", notes))
    assert written == {(t, DISTRIBUTION_COLUMN) for t in chosen}
    assert set(re.findall(r"create_reference_table\('([\w.]+)'\)", notes)) == set(REFERENCE_TABLES)
    for table in COORDINATOR_TABLES:
        assert f"`{table}`" in notes
