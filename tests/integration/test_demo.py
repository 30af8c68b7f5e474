"""The demo agency: loaded once, with strategies, campaigns and a week of posts in every state."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import asyncpg

from parvis.demo import DEMO_AGENCY, TENANTS, load_demo
from tests.integration.test_projections import caught_up


async def test_the_demo_loads_once_with_a_strategy_a_campaign_and_posts_in_every_state(
    projector: Any, settings: Any, conn: asyncpg.Connection
) -> None:
    # Given the demo loaded twice (as `parvis demo` does at every start)
    banner = load_demo(settings)
    load_demo(settings)
    await caught_up(conn)

    # Then there are three tenants, each with its strategy, its campaign, and posts along the approval chain
    assert "admin@demo.parvis" in banner
    tenants = await conn.fetch("SELECT tenant_id, name FROM read.tenants WHERE agency_id = $1", DEMO_AGENCY)
    assert sorted(t["name"] for t in tenants) == sorted(t.name for t in TENANTS)
    keys = [t["tenant_id"] for t in tenants]
    strategies = await conn.fetch("SELECT tenant_id, version FROM read.strategies WHERE tenant_id = ANY($1)", keys)
    assert sorted(s["version"] for s in strategies) == [1, 1, 1]
    assert await conn.fetchval("SELECT count(*) FROM read.campaigns WHERE tenant_id = ANY($1)", keys) == 3
    policies = await conn.fetch("SELECT version, terms FROM read.moderation_policies WHERE tenant_id = ANY($1)", keys)
    assert [p["version"] for p in policies] == [1, 1, 1]
    assert all(len(json.loads(p["terms"])["rules"]) == 2 for p in policies)
    # And a month of metrics, counted toward objectives that took effect a month ago
    days = await conn.fetchval("SELECT count(DISTINCT date_trunc('day', at)) FROM read.metric_observations "
                               "WHERE tenant_id = ANY($1) AND metric = 'followers'", keys)
    assert days >= 30
    oldest = await conn.fetchval("SELECT min(effective_from) FROM read.strategies WHERE tenant_id = ANY($1)", keys)
    assert oldest <= await conn.fetchval("SELECT min(at) FROM read.metric_observations WHERE tenant_id = ANY($1)", keys)
    statuses = Counter(r["status"] for r in await conn.fetch(
        "SELECT status FROM read.posts WHERE tenant_id = ANY($1)", keys))
    assert sum(statuses.values()) == sum(len(t.posts) for t in TENANTS)
    assert {"DRAFT", "IN_REVIEW", "AWAITING_CLIENT", "CHANGES_REQUESTED", "APPROVED", "SCHEDULED",
            "CANCELLED"} <= set(statuses)
    # And the approvals were given by the people who may give them, never the author
    rows = await conn.fetch("SELECT author_id, approvals FROM read.posts WHERE tenant_id = ANY($1)", keys)
    for row in rows:
        assert all(a["by"] != row["author_id"] for a in json.loads(row["approvals"]))
    # And the month's report, asked for once per tenant (the workers make it); made here as they would
    reports = await conn.fetch("SELECT tenant_id, period_start, period_end, status FROM read.reports "
                               "WHERE tenant_id = ANY($1)", keys)
    assert sorted(r["tenant_id"] for r in reports) == sorted(keys)
    from workers.reports import collect, render

    first = reports[0]
    data = await collect(conn, first["tenant_id"], first["period_start"], first["period_end"])
    assert len(data.kpis) == len(next(t for t in TENANTS if t.name == data.tenant).strategy.objectives)
    assert all(k.current is not None for k in data.kpis)  # every objective has its month of figures
    html, pdf = render(data)
    assert html.content.count(b'class="chart kpi-chart"') == len(data.kpis)
    assert pdf.content.startswith(b"%PDF-")
