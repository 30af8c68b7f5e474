"""Metrics pulled by a real worker from the sandbox: post counters replaced at each pull, followers as a level."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from api import ids
from tests.fakes.mastodon import FakeMastodon
from tests.support import Client, eventually
from workers.connectors.base import ChannelRef

CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
POLICY = "mutation($i: SetApprovalPolicyInput!) { setApprovalPolicy(input: $i) { userErrors { message } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } } }"
DRAFT = "mutation($i: DraftPostInput!) { draftPost(input: $i) { post { id } } }"
SUBMIT = "mutation($i: PostActionInput!) { submitPost(input: $i) { post { status } } }"
SCHEDULE = "mutation($i: SchedulePostInput!) { schedulePost(input: $i) { post { status } } }"
SERIES = """query($id: ID!, $m: String!, $from: DateTime!, $to: DateTime!) { tenant(id: $id) {
  metricSeries(metric: $m, from: $from, to: $to, granularity: DAY) { at value } } }"""



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


# What the read model holds of a tenant: per metric, (post id or "", value, instant, source), oldest first.
Seen = dict[str, list[tuple[str, float, datetime, str]]]


async def seen(conn: asyncpg.Connection, tenant_key: str) -> Seen:
    rows = await conn.fetch("SELECT metric, post_id, value, at, source FROM read.metric_observations "
                            "WHERE tenant_id = $1 ORDER BY at", tenant_key)
    found: Seen = {}
    for r in rows:
        found.setdefault(r["metric"], []).append((r["post_id"], r["value"], r["at"], r["source"]))
    return found


async def until(conn: asyncpg.Connection, tenant_key: str, check: Callable[[Seen], bool], within: float = 45) -> Seen:
    """What the read model holds once `check` accepts it, polled for at most `within` seconds."""
    deadline = time.monotonic() + within
    while not check(found := await seen(conn, tenant_key)):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s: {found}")
        await asyncio.sleep(0.3)
    return found


def totals(expected: dict[str, float]) -> Callable[[Seen], bool]:
    """Each of these metrics has exactly one value (a post's running total), the one expected."""
    return lambda found: all([row[1] for row in found.get(m, [])] == [v] for m, v in expected.items())


def latest_followers(value: float) -> Callable[[Seen], bool]:
    return lambda found: bool(found.get("followers")) and found["followers"][-1][1] == value


async def test_the_workers_pull_a_mastodon_channels_metrics_from_its_instance(
    admin: Client, worker: Any, conn: asyncpg.Connection, mastodon: tuple[FakeMastodon, ChannelRef]
) -> None:
    # Given a Mastodon account with two followers, connected to a tenant, and a post that goes out in two seconds
    fake, account = mastodon
    fake.add_follower("alice@other.example")
    fake.add_follower("bob")
    tid = admin.data(CREATE, {"i": {"name": f"Mastodon {uuid.uuid4().hex[:4]}", "kind": "NGO",
                                    "timezone": "Europe/Paris"}})["createTenant"]["tenant"]["id"]
    admin.data(POLICY, {"i": {"tenantId": tid, "internalApprovals": 0, "clientApproval": False}})
    connect = {"tenantId": tid, "platform": "MASTODON", "handle": account.handle, "credentials": account.credentials}
    channel = admin.data(CONNECT, {"i": connect})["connectChannel"]["channel"]["id"]
    post = admin.data(DRAFT, {"i": {"tenantId": tid, "variants": [{"channelId": channel, "body": "Bonjour"}]}})[
        "draftPost"]["post"]["id"]
    admin.data(SUBMIT, {"i": {"postId": post}})
    admin.data(SCHEDULE, {"i": {"postId": post, "at": (datetime.now(UTC) + timedelta(seconds=2)).isoformat()}})
    key, post_key = ids.raw(tid, "Tenant"), ids.raw(post, "Post")

    # When the post is out, and people favourite, boost and answer it on the instance
    (status_id,) = await asyncio.to_thread(eventually, lambda: list(fake.statuses))
    for acct in ("alice@other.example", "carol"):
        fake.add_favourite(acct, status_id)
    fake.add_reblog("dave@other.example", status_id)
    fake.add_reply("erin", "Bravo !", in_reply_to=status_id)

    # Then the workers record the instance's counts under Parvis' names: one running total per counter, at the
    # post's publication, from the connector; Mastodon has no impressions
    published_at = datetime.fromisoformat(fake.statuses[status_id]["created_at"])
    expected = {"likes": 2.0, "shares": 1.0, "replies": 1.0, "engagements": 4.0}
    found = await until(conn, key, totals(expected))
    assert {m: found[m] for m in expected} == {m: [(post_key, v, published_at, "mastodon")]
                                               for m, v in expected.items()}
    assert "impressions" not in found
    # And the account's followers as a level of the channel
    assert found["followers"][-1][:2] == ("", 2.0)
    assert {row[3] for row in found["followers"]} == {"mastodon"}

    # When the post gets another favourite and the account another follower
    fake.add_favourite("frank@other.example", status_id)
    fake.add_follower("frank@other.example")
    # Then a later pull replaces the post's total, and records a new level of three followers beside the old one
    found = await until(conn, key, totals({**expected, "likes": 3.0, "engagements": 5.0}))
    assert found["likes"] == [(post_key, 3.0, published_at, "mastodon")]
    found = await until(conn, key, latest_followers(3.0))
    assert (found["followers"][0][1], found["followers"][-1][1]) == (2.0, 3.0)
