"""The projector under kill -9: rebuilds resume, standbys take over, nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from typing import Any

import asyncpg
import pytest

from domain.tenant import Tenant
from projections.store import head_position
from tests.support import fresh_database, parvis, parvis_run, process_env

pytestmark = pytest.mark.slow


def bulk_events(domain: Any, agency_key: str, tenants: int, renames: int) -> None:
    """Many events, saved in large batches (one save per batch of aggregates)."""
    batch = []
    for i in range(tenants):
        tenant = Tenant(
            tenant_key=uuid.uuid4().hex,
            agency_key=agency_key,
            name=f"Bulk {i}",
            kind="NGO",
            timezone="Europe/Paris",
            locale="fr-FR",
        )
        for r in range(renames):
            tenant.rename(f"Bulk {i} rename {r}")
        batch.append(tenant)
        if len(batch) == 100:
            domain.commit(*batch)
            batch = []
    if batch:
        domain.commit(*batch)


async def dump_history(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await conn.fetch("SELECT tenant_id, seq, position, type, data, hash FROM read.history ORDER BY 1, 2")
    return [tuple(r) for r in rows]


async def test_kill_9_during_a_rebuild_then_resume_equals_a_rebuild_from_scratch(
    settings: Any, domain: Any, agency: dict[str, Any], redis_url: str, conn: asyncpg.Connection, projector: Any
) -> None:
    await asyncio.to_thread(bulk_events, domain, agency["key"], 300, 9)
    head = await head_position(conn)
    env = process_env(settings.database_url, redis_url, PARVIS_PROJECTION_BATCH_SIZE="20")
    rebuild = parvis("projections", "rebuild", "history", "--fresh", env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    position = 0
    while time.monotonic() < deadline:
        position = await conn.fetchval("SELECT position FROM parvis.tracking WHERE projection = 'history@next'") or 0
        if position > head // 4:
            break
        await asyncio.sleep(0.05)
    rebuild.send_signal(signal.SIGKILL)
    rebuild.wait()
    assert 0 < position < head, "the rebuild was killed in its middle"
    # The live read model kept serving while the rebuild was interrupted.
    assert await conn.fetchval("SELECT count(*) FROM read.history") > 0
    resumed = await asyncio.to_thread(parvis_run, "projections", "rebuild", "history", env=env)
    assert resumed.returncode == 0, resumed.stderr
    after_resume = await dump_history(conn)
    fresh = await asyncio.to_thread(parvis_run, "projections", "rebuild", "history", "--fresh", env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert await dump_history(conn) == after_resume
    assert len({(r[0], r[1]) for r in after_resume}) == len(after_resume)
    assert max(r[2] for r in after_resume) >= head


async def test_a_standby_runner_takes_over_when_the_active_one_is_killed(
    servers: tuple[str, str], tmp_path: Any
) -> None:
    from parvis import wiring
    from tests.conftest import make_settings, migrated

    with fresh_database(servers[0]) as url:
        isolated = make_settings(url, servers[1], tmp_path)
        await migrated(isolated)
        domain = wiring.domain(isolated)
        env = process_env(url, servers[1])
        first = parvis("project", env=env)
        second: subprocess.Popen[bytes] | None = None
        conn = await asyncpg.connect(url)
        try:
            agency_key = domain.register_agency("Failover", "f@failover.test", "correct horse battery").value[0]
            assert await _projected(conn, "SELECT name FROM read.agencies WHERE tenant_id = $1", agency_key)
            second = parvis("project", env=env)
            await asyncio.sleep(2)
            first.send_signal(signal.SIGKILL)
            first.wait()
            key = domain.create_tenant(agency_key, "After failover", "NGO", "Europe/Paris").value
            assert await _projected(conn, "SELECT name FROM read.tenants WHERE tenant_id = $1", key) == "After failover"
        finally:
            await conn.close()
            domain.close()
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=20)


async def _projected(conn: asyncpg.Connection, sql: str, *args: Any, within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            found = await conn.fetchval(sql, *args)
        except asyncpg.UndefinedTableError:
            found = None
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"not projected within {within}s: {sql}")
