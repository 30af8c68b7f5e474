"""Audit: signed checkpoints, verification by the command line and the API, exports verified offline."""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio

from api import ids
from parvis import wiring
from projections.audit import verify_scope
from projections.checkpoints import Checkpoints, checkpoint_heads, key_of
from tests.integration.test_projections import caught_up
from tests.support import ROOT, Client, free_port, parvis_run, process_env

VERIFY = """query($id: ID!) { tenant(id: $id) {
  verifyHistory { ok checkedEvents checkpointsChecked firstBadPosition checkpointError } } }"""
SCRIPT = ROOT / "parvis" / "verify_export.py"


async def tenant_with_events(domain: Any, agency: dict[str, Any], conn: asyncpg.Connection, *names: str) -> str:
    """A fresh tenant (its own scope, so that tests do not meet), renamed once per name, projected."""
    key: str = domain.create_tenant(agency["key"], f"Audit {uuid.uuid4().hex[:6]}", "NGO", "Europe/Paris").value
    for name in names:
        domain.update_tenant(key, name=name)
    await caught_up(conn)
    return key


async def sign(settings: Any, conn: asyncpg.Connection, key: str) -> dict[str, Any]:
    """Checkpoint one tenant's head in-process, as the worker's loop does."""
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    key_pair = wiring.checkpoint_key(settings)
    try:
        done = await checkpoint_heads(conn, client, settings.queue_namespace, key_pair, tenant=key)
    finally:
        await client.aclose()
    return json.loads(done.latest[key])  # type: ignore[no-any-return]


async def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(parvis_run, *args, env=env)


async def verify_api(admin: Client, key: str) -> dict[str, Any]:
    data = await asyncio.to_thread(admin.data, VERIFY, {"id": ids.encode("Tenant", key)})
    return data["tenant"]["verifyHistory"]  # type: ignore[no-any-return]


# The rebuild test (test_projections) compares every tenant's read models with a rebuild from the events, so
# tampering is undone afterwards, as the chain test there does.


@contextlib.asynccontextmanager
async def cut_off(conn: asyncpg.Connection, key: str, seq: int, position: int) -> AsyncIterator[None]:
    """Delete a tenant's last event and history entry and move its head back, as one hiding an event would."""
    event = await conn.fetchrow("DELETE FROM parvis_events WHERE notification_id = $1 RETURNING *", position)
    entry = await conn.fetchrow("DELETE FROM read.history WHERE tenant_id = $1 AND seq = $2 RETURNING *", key, seq)
    await conn.execute(
        "UPDATE read.history_heads h SET seq = p.seq, position = p.position, hash = p.hash FROM read.history p "
        "WHERE h.tenant_id = $1 AND p.tenant_id = $1 AND p.seq = $2",
        key,
        seq - 1,
    )
    try:
        yield
    finally:
        for table, row in (("parvis_events", event), ("read.history", entry)):
            columns = list(row.keys())
            values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
            await conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})", *row.values())
        await conn.execute(
            "UPDATE read.history_heads SET seq = $2, position = $3, hash = $4 WHERE tenant_id = $1",
            key, seq, position, entry["hash"],
        )


@contextlib.asynccontextmanager
async def altered(conn: asyncpg.Connection, position: int, text: str, replacement: str) -> AsyncIterator[None]:
    """Replace a text in one stored event's bytes."""
    change = (
        "UPDATE parvis_events SET state = convert_to(replace(convert_from(state, 'UTF8'), $2, $3), 'UTF8') "
        "WHERE notification_id = $1"
    )
    await conn.execute(change, position, text, replacement)
    try:
        yield
    finally:
        await conn.execute(change, position, replacement, text)


def offline(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The verifier copied away from the repository and run by a plain interpreter."""
    script = tmp_path / "verify_export.py"
    shutil.copyfile(SCRIPT, script)
    python = shutil.which("python") or sys.executable
    return subprocess.run(
        [python, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
    )


async def test_a_clean_tenant_verifies_its_chain_and_checkpoints_by_cli_and_api(
    projector: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection, admin: Client, settings: Any,
    redis_url: str,
) -> None:
    # Given a tenant with three events, checkpointed through the command line
    key = await tenant_with_events(domain, agency, conn, "One", "Two")
    env = process_env(settings.database_url, redis_url)
    signed = await cli("audit", "checkpoint", "--tenant", ids.encode("Tenant", key), env=env)
    assert signed.returncode == 0, signed.stderr
    checkpoint = json.loads(signed.stdout)
    head = await conn.fetchrow("SELECT seq, position, hash FROM read.history_heads WHERE tenant_id = $1", key)
    assert (checkpoint["tenant"], checkpoint["seq"], checkpoint["position"], checkpoint["hash"]) == (key, *head)

    # When the command line (with the raw key) and the API verify it
    verified = await cli("audit", "verify", "--tenant", key, env=env)
    api = await verify_api(admin, key)

    # Then both find the chain and the checkpoint intact
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "checked events: 3" in verified.stdout
    assert "checkpoints checked: 1" in verified.stdout
    assert api == {
        "ok": True, "checkedEvents": 3, "checkpointsChecked": 1, "firstBadPosition": None, "checkpointError": None
    }


async def test_cutting_off_the_last_event_is_named_thanks_to_the_checkpoint(
    projector: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection, admin: Client, settings: Any,
    redis_url: str,
) -> None:
    # Given a checkpointed tenant
    key = await tenant_with_events(domain, agency, conn, "One", "Two", "Three")
    await sign(settings, conn, key)
    last = await conn.fetchrow(
        "SELECT seq, position FROM read.history WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1", key
    )

    # When its last event, its history entry and its head are rolled back directly in the database
    async with cut_off(conn, key, last["seq"], last["position"]):
        assert (await verify_scope(conn, key, as_app=False)).ok, "the chain alone cannot tell"

        # Then the command line and the API name the cut-off position, and no checkpoint blesses the shorter history
        env = process_env(settings.database_url, redis_url)
        verified = await cli("audit", "verify", "--tenant", ids.encode("Tenant", key), env=env)
        assert verified.returncode == 1, verified.stdout + verified.stderr
        assert f"first bad position {last['position']}" in verified.stdout
        api = await verify_api(admin, key)
        assert api["ok"] is False
        assert api["checkedEvents"] == 3
        assert api["firstBadPosition"] == str(last["position"])
        assert "missing" in api["checkpointError"]
        again = await cli("audit", "checkpoint", "--tenant", key, env=env)
        assert again.returncode == 1
        assert key in again.stderr


async def test_an_altered_event_is_named_by_its_position(
    projector: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection, admin: Client, settings: Any,
    redis_url: str,
) -> None:
    # Given a checkpointed tenant
    key = await tenant_with_events(domain, agency, conn, "One", "Two", "Three")
    await sign(settings, conn, key)

    # When one event's bytes are altered in the store
    victim = await conn.fetchval(
        "SELECT notification_id FROM parvis_events WHERE originator_id = $1 AND originator_version = 3",
        f"{key}/tenant/{key}",
    )
    async with altered(conn, victim, "Two", "Tw0"):
        # Then both name its position (the history itself, and so the checkpoint, still hold)
        verified = await cli("audit", "verify", "--tenant", key, env=process_env(settings.database_url, redis_url))
        assert verified.returncode == 1
        assert f"first bad position {victim}" in verified.stdout
        api = await verify_api(admin, key)
        assert (api["ok"], api["firstBadPosition"], api["checkpointsChecked"]) == (False, str(victim), 1)


async def test_an_exported_window_verifies_offline_and_a_tampered_line_is_found(
    projector: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection, settings: Any, redis_url: str,
    tmp_path: Path,
) -> None:
    # Given a tenant checkpointed at its third event, with two more events after it
    key = await tenant_with_events(domain, agency, conn, "One", "Two")
    checkpoint = await sign(settings, conn, key)
    for name in ("Three", "Four"):
        domain.update_tenant(key, name=name)
    await caught_up(conn)
    times = [r["occurred_at"] for r in await conn.fetch(
        "SELECT occurred_at FROM read.history WHERE tenant_id = $1 ORDER BY seq", key
    )]

    # When the window of the second and third events is exported with its checkpoint, and the public key fetched
    env = process_env(settings.database_url, redis_url)
    export, signed = tmp_path / "window.jsonl", tmp_path / "checkpoint.json"
    done = await cli(
        "audit", "export", "--tenant", key, "--from", times[1].isoformat(), "--to", times[3].isoformat(),
        "--output", str(export), "--with-checkpoint", str(signed), env=env,
    )
    assert done.returncode == 0, done.stderr
    public_key = (await cli("audit", "public-key", env=env)).stdout.strip()
    assert len(base64.b64decode(public_key)) == 32

    # Then the window verifies on its own, anchored by the signed checkpoint
    header, *lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert (header["previous_seq"], header["last_seq"], [e["seq"] for e in lines]) == (1, 3, [2, 3])
    assert json.loads(signed.read_text()) == checkpoint
    clean = offline(tmp_path, str(export), "--checkpoint", str(signed), "--public-key", public_key)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "seq 3" in clean.stdout

    # And a line whose event bytes were changed is named
    lines[1]["canonical"] = base64.b64encode(base64.b64decode(lines[1]["canonical"]).replace(b"Two", b"Tw0")).decode()
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(json.dumps(r) for r in [header, *lines]) + "\n")
    caught = offline(tmp_path, str(tampered))
    assert caught.returncode == 1
    assert "line 3" in caught.stdout

    # And so is a line that names another actor than its event's
    header_line, first, second = export.read_text().splitlines()
    impostor = tmp_path / "impostor.jsonl"
    impostor.write_text("\n".join([header_line, json.dumps({**json.loads(first), "actor": "someone-else"}), second]))
    caught = offline(tmp_path, str(impostor))
    assert caught.returncode == 1
    assert "line 2" in caught.stdout
    assert "actor" in caught.stdout

    # And so is a checkpoint whose hash was changed
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**checkpoint, "hash": "0" * 64}))
    refused = offline(tmp_path, str(export), "--checkpoint", str(forged), "--public-key", public_key)
    assert refused.returncode == 1
    assert "signature" in refused.stdout


async def test_a_whole_history_exported_as_csv_verifies_offline(
    projector: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection, settings: Any, redis_url: str,
    tmp_path: Path,
) -> None:
    from domain.context import Actor, acting_as

    # Given a tenant whose events carry an actor, a role and text that CSV must quote
    actor = Actor(id=agency["admin"], role="AGENCY_ADMIN", reason='onboarding, "as agreed"\nby phone')
    with acting_as(actor):
        key = await tenant_with_events(domain, agency, conn, 'Quote "this", please', "Line\nbreak")

    # When its whole history is exported as CSV
    export = tmp_path / "all.csv"
    done = await cli(
        "audit", "export", "--tenant", key, "--format", "csv", "--output", str(export),
        env=process_env(settings.database_url, redis_url),
    )

    # Then the header comment, the columns and the chain verify
    assert done.returncode == 0, done.stderr
    assert export.read_text().startswith('# {"parvis_export":1')
    assert "AGENCY_ADMIN" in export.read_text()
    checked = offline(tmp_path, str(export))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "3 events" in checked.stdout


async def test_without_redis_the_chain_is_still_verified_and_says_so(
    projector: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection, settings: Any
) -> None:
    # Given a tenant, and a checkpoint store that cannot be reached
    key = await tenant_with_events(domain, agency, conn)
    unreachable = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    store = Checkpoints(unreachable, settings.queue_namespace, wiring.checkpoint_public_key(settings))

    # When it is verified
    try:
        result = await verify_scope(conn, key, as_app=False, checkpoints=store)
    finally:
        await unreachable.aclose()

    # Then the chain is, and the checkpoints are said not to be
    assert (result.ok, result.checked_events, result.checkpoints_checked) == (True, 1, 0)
    assert result.checkpoint_error is not None
    assert "unavailable" in result.checkpoint_error


async def test_the_worker_loop_signs_each_head_that_moved(
    projector: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection, settings: Any
) -> None:
    from parvis.worker import checkpoint_loop

    # Given a tenant, and the worker's checkpoint loop on a namespace of its own, every 0.2 s
    key = await tenant_with_events(domain, agency, conn)
    own = settings.model_copy(update={"checkpoint_seconds": 0.2, "queue_namespace": f"audit-{uuid.uuid4().hex[:8]}"})
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    stopped = asyncio.Event()
    loop = asyncio.create_task(checkpoint_loop(own, stopped))

    async def checkpoints(count: int) -> int:
        for _ in range(100):
            found = await client.zcard(key_of(own.queue_namespace, key))
            if found >= count:
                return int(found)
            await asyncio.sleep(0.05)
        return int(found)

    try:
        # When the loop has run, and again after the tenant changed
        first = await checkpoints(1)
        domain.update_tenant(key, name="Moved")
        await caught_up(conn)
        second = await checkpoints(2)
        await asyncio.sleep(0.5)
        settled = await client.zcard(key_of(own.queue_namespace, key))
    finally:
        stopped.set()
        await loop
        await client.aclose()

    # Then one checkpoint per head, none for a head that did not move
    assert (first, second, settled) == (1, 2, 2)


def test_the_offline_verifier_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(SCRIPT.read_text())
    modules = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert modules - {"cryptography"} <= set(sys.stdlib_module_names)
