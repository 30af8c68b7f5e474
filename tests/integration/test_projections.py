"""The projection runner and the read models, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from parvis import wiring
from projections.audit import verify_scope
from projections.runner import rebuild, tracked
from projections.store import head_position
from tests.support import PASSWORD

# The read models the in-process projector runs (the dispatcher belongs to the workers).
READ_MODELS = wiring.read_model_names()


async def caught_up(conn: asyncpg.Connection, within: float = 10) -> int:
    head = await head_position(conn)
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        rows = await conn.fetch("SELECT position FROM parvis.tracking WHERE projection = ANY($1)", READ_MODELS)
        if rows and all(r["position"] >= head for r in rows):
            return head
        await asyncio.sleep(0.05)
    raise TimeoutError("projections did not catch up")


async def dump(conn: asyncpg.Connection, table: str, order: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY {order}")]


async def test_events_reach_the_read_models_with_their_metadata(
    projector: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection
) -> None:
    from domain.context import Actor, acting_as

    with acting_as(Actor(id=agency["admin"], role="AGENCY_ADMIN", reason="onboarding")):
        key = domain.create_tenant(agency["key"], "Secours Populaire", "NGO", "Europe/Paris").value
        domain.connect_channel(key, "FACEBOOK", "@secours", "Aider", {"token": "x"})
    await caught_up(conn)
    tenant = await conn.fetchrow("SELECT * FROM read.tenants WHERE tenant_id = $1", key)
    assert tenant["name"] == "Secours Populaire"
    assert tenant["agency_id"] == agency["key"]
    channel = await conn.fetchrow("SELECT * FROM read.channels WHERE tenant_id = $1", key)
    assert channel["handle"] == "@secours"
    history = await conn.fetch("SELECT * FROM read.history WHERE tenant_id = $1 ORDER BY seq", key)
    assert [h["type"] for h in history] == ["Created", "Connected"]
    assert history[0]["actor"] == agency["admin"]
    assert history[0]["reason"] == "onboarding"
    assert '"credentials": "[redacted]"' in history[1]["data"]


async def test_a_clean_chain_verifies_and_an_altered_event_is_named(
    projector: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection
) -> None:
    key = domain.create_tenant(agency["key"], "Chain", "NGO", "Europe/Paris").value
    for name in ("One", "Two", "Three"):
        domain.update_tenant(key, name=name)
    await caught_up(conn)
    clean = await verify_scope(conn, key, as_app=False)
    assert clean.ok
    assert clean.checked_events == 4
    victim = await conn.fetchrow(
        "SELECT notification_id FROM parvis_events WHERE originator_id = $1 AND originator_version = 3",
        f"{key}/tenant/{key}",
    )
    await conn.execute(
        "UPDATE parvis_events SET state = convert_to(replace(convert_from(state, 'UTF8'), 'Two', 'Tw0'), 'UTF8') "
        "WHERE notification_id = $1",
        victim["notification_id"],
    )
    altered = await verify_scope(conn, key, as_app=False)
    assert not altered.ok
    assert altered.first_bad_position == victim["notification_id"]
    await conn.execute(
        "UPDATE parvis_events SET state = convert_to(replace(convert_from(state, 'UTF8'), 'Tw0', 'Two'), 'UTF8') "
        "WHERE notification_id = $1",
        victim["notification_id"],
    )
    assert (await verify_scope(conn, key, as_app=False)).ok


async def test_row_level_security_alone_hides_other_tenants(
    projector: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection
) -> None:
    mine = domain.create_tenant(agency["key"], "Mine", "NGO", "Europe/Paris").value
    theirs = domain.create_tenant(agency["key"], "Theirs", "BRAND", "Europe/Paris").value
    domain.grant_membership(agency["key"], "viewer@mine.test", "CLIENT_VIEWER", mine, "V", PASSWORD)
    await caught_up(conn)
    tables = [
        r["t"]
        for r in await conn.fetch("SELECT schemaname || '.' || tablename AS t FROM pg_tables WHERE schemaname = 'read'")
    ]
    assert "read.tenants" in tables
    assert "read.history" in tables
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE parvis_app")
        await conn.execute("SELECT set_config('parvis.tenants', $1, true)", mine)
        for table in tables:
            scopes = {r["tenant_id"] for r in await conn.fetch(f"SELECT tenant_id FROM {table}")}
            assert theirs not in scopes, table
            assert scopes <= {mine}, table
        seen = await conn.fetchval("SELECT count(*) FROM read.tenants WHERE tenant_id = $1", mine)
        assert seen == 1
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE parvis_app")
        for table in tables:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_the_app_role_cannot_read_the_event_store(conn: asyncpg.Connection, settings: Any) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE parvis_app")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM parvis_events LIMIT 1")


async def dump_read_models(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every read-model table of every projection, in a stable order."""
    tables = {
        "read.tenants": "tenant_id", "read.channels": "tenant_id, id", "read.history": "tenant_id, seq",
        "read.memberships": "tenant_id, id", "read.strategies": "tenant_id, version",
        "read.campaigns": "tenant_id, id", "read.posts": "tenant_id, id",
        "read.post_transitions": "tenant_id, position, post_id", "read.moderation_policies": "tenant_id, version",
        "read.interactions": "tenant_id, id", "read.interaction_changes": "tenant_id, position, interaction_id",
    }
    return {table: await dump(conn, table, order) for table, order in tables.items()}


async def test_a_rebuild_gives_the_same_tables_as_the_live_run(
    projector: Any, settings: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection
) -> None:
    from parvis import wiring

    key = domain.create_tenant(agency["key"], "Rebuilt", "OTHER", "America/New_York").value
    domain.connect_channel(key, "BLUESKY", "@rebuilt.bsky.social", None, None)
    await caught_up(conn)
    before = await dump_read_models(conn)
    for projection in wiring.projections(settings):
        await rebuild(conn, projection, batch_size=7)
        state = await tracked(conn, projection)
        assert state is not None
        assert state[0] == await head_position(conn)
    after = await dump_read_models(conn)
    assert after == before
