"""Metrics pulled by a real worker from the sandbox: post counters replaced at each pull, followers as a level."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from api import ids
from tests.support import Client

CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
POLICY = "mutation($i: SetApprovalPolicyInput!) { setApprovalPolicy(input: $i) { userErrors { message } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } } }"
DRAFT = "mutation($i: DraftPostInput!) { draftPost(input: $i) { post { id } } }"
SUBMIT = "mutation($i: PostActionInput!) { submitPost(input: $i) { post { status } } }"
SCHEDULE = "mutation($i: SchedulePostInput!) { schedulePost(input: $i) { post { status } } }"
SERIES = """query($id: ID!, $m: String!, $from: DateTime!, $to: DateTime!) { tenant(id: $id) {
  metricSeries(metric: $m, from: $from, to: $to, granularity: DAY) { at value } } }"""


def eventually(check: Any, within: float = 45) -> Any:
    deadline = time.monotonic() + within
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        time.sleep(0.3)
    return value


async def test_the_workers_pull_a_sandbox_channels_metrics(
    admin: Client, worker: Any, conn: asyncpg.Connection
) -> None:
    # Given a sandbox channel with a post that goes out in two seconds
    tid = admin.data(CREATE, {"i": {"name": f"Mesures {uuid.uuid4().hex[:4]}", "kind": "NGO",
                                    "timezone": "Europe/Paris"}})["createTenant"]["tenant"]["id"]
    admin.data(POLICY, {"i": {"tenantId": tid, "internalApprovals": 0, "clientApproval": False}})
    channel = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": "@mesures"}})[
        "connectChannel"]["channel"]["id"]
    post = admin.data(DRAFT, {"i": {"tenantId": tid, "variants": [{"channelId": channel, "body": "Bonjour"}]}})[
        "draftPost"]["post"]["id"]
    admin.data(SUBMIT, {"i": {"postId": post}})
    admin.data(SCHEDULE, {"i": {"postId": post, "at": (datetime.now(UTC) + timedelta(seconds=2)).isoformat()}})
    window = {"id": tid, "from": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
              "to": (datetime.now(UTC) + timedelta(days=1)).isoformat()}

    def series(metric: str) -> list[dict[str, Any]]:
        return admin.data(SERIES, {**window, "m": metric})["tenant"]["metricSeries"]  # type: ignore[no-any-return]

    # Then the channel's followers are recorded as a level, and the post's counters once per post however
    # many pulls ran (a total replaced, not added up)
    followers = await asyncio.to_thread(eventually, lambda: series("followers"))
    assert followers[0]["value"] >= 300
    await asyncio.to_thread(eventually, lambda: series("impressions"))
    await asyncio.sleep(7)  # two more pulls
    key = ids.raw(tid, "Tenant")
    rows = await conn.fetch("SELECT metric, count(*) AS n FROM read.metric_observations WHERE tenant_id = $1 "
                            "GROUP BY metric", key)
    counts = {r["metric"]: r["n"] for r in rows}
    assert counts["impressions"] == 1  # one running total for the post, replaced at each pull
    assert counts["followers"] >= 3  # one level per pull
