"""Strategy and publishing over HTTP and WebSocket, against a running API, projector and worker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import websockets

from tests.support import PASSWORD, Client

GRANT = """mutation($i: GrantMembershipInput!) { grantMembership(input: $i) { userErrors { code field message } } }"""
CREATE = """mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } userErrors { message } } }"""
POLICY = """mutation($i: SetApprovalPolicyInput!) { setApprovalPolicy(input: $i) { userErrors { message } } }"""
CONNECT = """mutation($i: ConnectChannelInput!) {
  connectChannel(input: $i) { channel { id } userErrors { message } } }"""
POST_FIELDS = """post { id status version scheduledAt holdReason error author { email } temperature
  variants { channel { id handle } body externalId externalUrl publishedAt error }
  approvals { by { email } step approved comment submission onBehalfOf } }
  userErrors { code field message } position consistent"""
DRAFT = f"mutation($i: DraftPostInput!) {{ draftPost(input: $i) {{ {POST_FIELDS} }} }}"
EDIT = f"mutation($i: EditPostInput!) {{ editPost(input: $i) {{ {POST_FIELDS} }} }}"
SUBMIT = f"mutation($i: PostActionInput!) {{ submitPost(input: $i) {{ {POST_FIELDS} }} }}"
APPROVE = f"mutation($i: ReviewPostInput!) {{ approvePost(input: $i) {{ {POST_FIELDS} }} }}"
REQUEST = f"mutation($i: ReviewPostInput!) {{ requestChanges(input: $i) {{ {POST_FIELDS} }} }}"
SCHEDULE = f"mutation($i: SchedulePostInput!) {{ schedulePost(input: $i) {{ {POST_FIELDS} }} }}"
CANCEL = f"mutation($i: PostActionInput!) {{ cancelPost(input: $i) {{ {POST_FIELDS} }} }}"
NODE = """query($id: ID!) {
  node(id: $id) { ... on Post { id status error variants { externalUrl error } history { type } } } }"""
REVISE = """mutation($i: ReviseStrategyInput!) { reviseStrategy(input: $i) {
  strategy { version reason revisedBy { email } objectives { id title metric target intent channelId }
             personas { id name } editorialLine { tone themes hotShare postsPerWeek { channelId postsPerWeek } } }
  userErrors { code field message } consistent } }"""
CRISIS_ON = """mutation($i: ActivateCrisisInput!) { activateCrisis(input: $i) {
  tenant { crisis { reason heldPosts activatedBy { email } } } userErrors { code message } } }"""
CRISIS_OFF = """mutation($i: TenantActionInput!) { deactivateCrisis(input: $i) {
  tenant { crisis { reason } } userErrors { code message } } }"""


def email(role: str) -> str:
    return f"{role.lower()}-{uuid.uuid4().hex[:6]}@publishing.test"


def person(admin: Client, tenant_id: str, role: str) -> tuple[Client, str]:
    address = email(role)
    data = admin.data(GRANT, {"i": {"email": address, "role": role, "tenantId": tenant_id, "password": PASSWORD}})
    assert data["grantMembership"]["userErrors"] == []
    return admin.login(address), address



@pytest.fixture(scope="module")
def tenant(admin: Client) -> dict[str, Any]:
    """A tenant whose posts need one internal approval and the client's, with two sandbox channels and its people."""
    tid = admin.data(CREATE, {"i": {"name": f"Publications {uuid.uuid4().hex[:4]}", "kind": "NGO",
                                    "timezone": "Europe/Paris"}})["createTenant"]["tenant"]["id"]
    admin.data(POLICY, {"i": {"tenantId": tid, "internalApprovals": 1, "clientApproval": True,
                              "expiresAfterHours": 48}})
    channels = [
        admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": handle,
                                   "credentials": {"token": "t"}}})["connectChannel"]["channel"]["id"]
        for handle in ("@publi-a", "@publi-b")
    ]
    cm, cm_email = person(admin, tid, "COMMUNITY_MANAGER")
    cm2, cm2_email = person(admin, tid, "COMMUNITY_MANAGER")
    reviewer, reviewer_email = person(admin, tid, "CLIENT_REVIEWER")
    viewer, _ = person(admin, tid, "CLIENT_VIEWER")
    return {"id": tid, "channels": channels, "cm": cm, "cm_email": cm_email, "cm2": cm2, "cm2_email": cm2_email,
            "reviewer": reviewer, "reviewer_email": reviewer_email, "viewer": viewer}


def draft(client: Client, tenant: dict[str, Any], body: str = "Journée mondiale des premiers secours",
          **extra: Any) -> dict[str, Any]:
    variants = [{"channelId": c, "body": f"{body} ({i})"} for i, c in enumerate(tenant["channels"])]
    payload = client.data(DRAFT, {"i": {"tenantId": tenant["id"], "variants": variants, **extra}})["draftPost"]
    assert payload["userErrors"] == [], payload
    return payload["post"]  # type: ignore[no-any-return]


def approved(tenant: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A post drafted by the first community manager and approved by the second and by the client."""
    post = draft(tenant["cm"], tenant, **extra)
    tenant["cm"].data(SUBMIT, {"i": {"postId": post["id"]}})
    tenant["cm2"].data(APPROVE, {"i": {"postId": post["id"]}})
    final = tenant["reviewer"].data(APPROVE, {"i": {"postId": post["id"], "comment": "OK pour nous"}})
    assert final["approvePost"]["post"]["status"] == "APPROVED", final
    return final["approvePost"]["post"]  # type: ignore[no-any-return]


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def collect_post_updates(server: str, token: str, tenant_id: str, until: str, within: float) -> list[str]:
    """The statuses the postUpdates subscription delivers, until one equals `until`."""
    url = server.replace("http://", "ws://")
    seen: list[str] = []
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription($t: ID!) { postUpdates(tenantId: $t) { id status } }"
        await ws.send(json.dumps({"id": "p", "type": "subscribe", "payload": {
            "query": query, "variables": {"t": tenant_id}}}))
        deadline = asyncio.get_running_loop().time() + within
        while not seen or seen[-1] != until:
            remaining = deadline - asyncio.get_running_loop().time()
            message = json.loads(await asyncio.wait_for(ws.recv(), max(remaining, 0.1)))
            assert message["type"] == "next", message
            seen.append(message["payload"]["data"]["postUpdates"]["status"])
    return seen


async def test_a_post_goes_from_draft_to_published_and_the_subscription_sees_every_state(
    server: str, worker: Any, tenant: dict[str, Any]
) -> None:
    # Given a subscriber to the tenant's posts
    watcher = asyncio.create_task(collect_post_updates(server, tenant["cm"].token or "", tenant["id"], "PUBLISHED", 60))
    await asyncio.sleep(0.5)

    # When a post is drafted, submitted, approved by another community manager and by the client, then scheduled
    post = await asyncio.to_thread(approved, tenant)
    assert [(a["step"], a["approved"], a["by"]["email"], a["onBehalfOf"]) for a in post["approvals"]] == [
        ("internal", True, tenant["cm2_email"], tenant["id"]),  # agency staff act for the client
        ("client", True, tenant["reviewer_email"], None)]
    scheduled = (await asyncio.to_thread(
        tenant["cm"].data, SCHEDULE, {"i": {"postId": post["id"], "at": soon(3)}}))["schedulePost"]["post"]
    assert scheduled["status"] == "SCHEDULED"

    # Then the worker publishes it on the sandbox, with its external URL, and the subscriber saw every state
    states = await watcher
    assert states == ["DRAFT", "IN_REVIEW", "AWAITING_CLIENT", "APPROVED", "SCHEDULED", "PUBLISHING", "PUBLISHED"]
    published = (await asyncio.to_thread(tenant["viewer"].data, NODE, {"id": post["id"]}))["node"]
    assert published["status"] == "PUBLISHED"
    assert all(v["externalUrl"].startswith("https://sandbox.parvis.dev/") for v in published["variants"])
    assert [h["type"] for h in published["history"]][-3:] == ["VariantPublished", "VariantPublished", "Published"]

    # And a published post cannot be cancelled
    refused = (await asyncio.to_thread(tenant["cm"].data, CANCEL, {"i": {"postId": post["id"]}}))["cancelPost"]
    assert refused["userErrors"][0]["code"] == "INVALID_TRANSITION"


def test_nobody_approves_their_own_post_and_a_client_cannot_take_the_internal_step(
    tenant: dict[str, Any], admin: Client
) -> None:
    post = draft(tenant["cm"], tenant)
    tenant["cm"].data(SUBMIT, {"i": {"postId": post["id"]}})

    own = tenant["cm"].data(APPROVE, {"i": {"postId": post["id"]}})["approvePost"]
    assert own["post"] is None
    assert own["userErrors"] == [{"code": "SELF_APPROVAL", "field": ["input", "postId"],
                                  "message": "nobody approves their own post"}]

    assert tenant["reviewer"].error_codes(APPROVE, {"i": {"postId": post["id"]}}) == ["FORBIDDEN"]
    assert tenant["viewer"].error_codes(APPROVE, {"i": {"postId": post["id"]}}) == ["FORBIDDEN"]
    history = admin.data("query($id: ID!) { tenant(id: $id) { history(first: 100, filter: {types: [\"AccessDenied\"]}) "
                         "{ edges { node { data } } } } }", {"id": tenant["id"]})["tenant"]["history"]["edges"]
    assert {"approvePost"} <= {e["node"]["data"]["operation"] for e in history}


def test_changes_requested_send_the_post_back_and_a_stale_edit_is_a_conflict(tenant: dict[str, Any]) -> None:
    post = draft(tenant["cm"], tenant)
    tenant["cm"].data(SUBMIT, {"i": {"postId": post["id"]}})
    back = tenant["cm2"].data(REQUEST, {"i": {"postId": post["id"], "comment": "Ton trop alarmiste"}})
    assert back["requestChanges"]["post"]["status"] == "CHANGES_REQUESTED"

    variants = [{"channelId": tenant["channels"][0], "body": "Version adoucie"}]
    stale = tenant["cm"].data(EDIT, {"i": {"postId": post["id"], "expectedVersion": 1, "variants": variants}})
    assert stale["editPost"]["userErrors"][0]["code"] == "CONFLICT"
    assert stale["editPost"]["userErrors"][0]["field"] == ["input", "expectedVersion"]

    current = back["requestChanges"]["post"]["version"]
    edited = tenant["cm"].data(EDIT, {"i": {"postId": post["id"], "expectedVersion": current, "variants": variants}})
    assert edited["editPost"]["post"]["status"] == "DRAFT"
    assert [v["body"] for v in edited["editPost"]["post"]["variants"]] == ["Version adoucie"]


def test_bad_input_names_the_field_and_stores_nothing(tenant: dict[str, Any]) -> None:
    bad_channel = tenant["cm"].data(DRAFT, {"i": {"tenantId": tenant["id"], "variants": [
        {"channelId": tenant["channels"][0], "body": "ok"}, {"channelId": "not-an-id", "body": "x"}]}})["draftPost"]
    assert bad_channel["post"] is None
    assert bad_channel["userErrors"][0]["field"] == ["input", "variants", "1", "channelId"]

    empty = tenant["cm"].data(DRAFT, {"i": {"tenantId": tenant["id"], "variants": [
        {"channelId": tenant["channels"][0], "body": "   "}]}})["draftPost"]
    assert empty["userErrors"][0]["field"] == ["input", "variants", "0", "body"]

    post = approved(tenant)
    past = tenant["cm"].data(SCHEDULE, {"i": {"postId": post["id"], "at": "2020-01-01T10:00:00+01:00"}})
    assert past["schedulePost"]["userErrors"][0]["field"] == ["input", "at"]


def test_a_local_time_that_does_not_exist_is_moved_forward_by_the_jump(tenant: dict[str, Any]) -> None:
    post = approved(tenant)
    # 2:30 on the last Sunday of March 2031 does not exist in Paris: it becomes 3:30 summer time (01:30 UTC).
    at = tenant["cm"].data(SCHEDULE, {"i": {"postId": post["id"], "at": "2031-03-30T02:30:00"}})
    assert at["schedulePost"]["post"]["scheduledAt"] == "2031-03-30T01:30:00+00:00"
    # 2:30 on the last Sunday of October occurs twice: the first one (summer time, 00:30 UTC) is taken.
    again = tenant["cm"].data(SCHEDULE, {"i": {"postId": post["id"], "at": "2031-10-26T02:30:00"}})
    assert again["schedulePost"]["post"]["scheduledAt"] == "2031-10-26T00:30:00+00:00"


def test_crisis_holds_the_cold_scheduled_posts_and_releases_them(tenant: dict[str, Any]) -> None:
    cold = approved(tenant)
    hot = approved(tenant, temperature="HOT")
    later = soon(3600)
    for post in (cold, hot):
        tenant["cm"].data(SCHEDULE, {"i": {"postId": post["id"], "at": later}})

    on = tenant["cm"].data(CRISIS_ON, {"i": {"tenantId": tenant["id"], "reason": "Crue de la Loire"}})
    crisis = on["activateCrisis"]["tenant"]["crisis"]
    assert crisis["reason"] == "Crue de la Loire"
    assert crisis["activatedBy"]["email"] == tenant["cm_email"]
    assert crisis["heldPosts"] >= 1
    statuses = {p["id"]: tenant["cm"].data(NODE, {"id": p["id"]})["node"]["status"] for p in (cold, hot)}
    assert statuses == {cold["id"]: "HELD", hot["id"]: "SCHEDULED"}

    off = tenant["cm"].data(CRISIS_OFF, {"i": {"tenantId": tenant["id"]}})
    assert off["deactivateCrisis"]["tenant"]["crisis"] is None
    assert tenant["cm"].data(NODE, {"id": cold["id"]})["node"]["status"] == "SCHEDULED"
    for post in (cold, hot):
        tenant["cm"].data(CANCEL, {"i": {"postId": post["id"]}})


def test_strategy_revisions_are_versions_answerable_at_any_instant(tenant: dict[str, Any], admin: Client) -> None:
    first_objective = {"title": "Recruter des bénévoles", "intent": "ACTION", "metric": "volunteer_signups",
                       "target": 300, "baseline": 120, "deadline": "2027-06-30T00:00:00+02:00"}
    line = {"tone": "chaleureux", "themes": ["premiers secours"], "hotShare": 0.2,
            "postsPerWeek": [{"channelId": tenant["channels"][0], "postsPerWeek": 4}]}
    one = tenant["cm"].data(REVISE, {"i": {"tenantId": tenant["id"], "reason": "Lancement", "objectives": [
        first_objective], "personas": [{"name": "Étudiante secouriste"}], "editorialLine": line}})["reviseStrategy"]
    assert one["userErrors"] == []
    assert one["strategy"]["version"] == 1
    assert one["strategy"]["revisedBy"]["email"] == tenant["cm_email"]
    between = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    two = tenant["cm"].data(REVISE, {"i": {"tenantId": tenant["id"], "reason": "Ajout des dons", "objectives": [
        first_objective, {"title": "Collecter", "intent": "ACTION", "metric": "donations_amount", "target": 50000}],
        "personas": [], "editorialLine": line}})["reviseStrategy"]
    assert two["strategy"]["version"] == 2
    assert two["strategy"]["objectives"][0]["id"] == one["strategy"]["objectives"][0]["id"]

    q = """query($id: ID!, $at: DateTime!) { tenant(id: $id) {
           strategy { version } strategyAt(at: $at) { version reason } strategyVersions { version } } }"""
    seen = tenant["viewer"].data(q, {"id": tenant["id"], "at": between})["tenant"]
    assert seen["strategy"] == {"version": 2}
    assert seen["strategyAt"] == {"version": 1, "reason": "Lancement"}
    assert [s["version"] for s in seen["strategyVersions"]] == [1, 2]

    bad = tenant["cm"].data(REVISE, {"i": {"tenantId": tenant["id"], "reason": "x", "objectives": [
        {**first_objective, "metric": "Not A Metric"}], "personas": [], "editorialLine": {}}})["reviseStrategy"]
    assert bad["userErrors"][0]["field"] == ["input", "objectives", "0", "metric"]
    assert tenant["viewer"].error_codes(REVISE, {"i": {"tenantId": tenant["id"], "reason": "x", "objectives": [],
                                                       "personas": [], "editorialLine": {}}}) == ["FORBIDDEN"]


def test_a_page_of_posts_costs_a_fixed_number_of_queries(tenant: dict[str, Any]) -> None:
    for _ in range(12):
        draft(tenant["cm"], tenant, body="Série")
    q = """query($id: ID!, $n: Int!) { tenant(id: $id) { posts(first: $n) { totalCount edges { node {
      id status author { email } campaign { name } variants { channel { handle } body } approvals { by { email } }
      history { type } } } } } }"""

    def queries(n: int) -> int:
        body = tenant["cm"].execute(q, {"id": tenant["id"], "n": n})
        assert not body.get("errors"), body
        assert len(body["data"]["tenant"]["posts"]["edges"]) == n
        return int(body["extensions"]["sqlQueries"])

    assert queries(2) == queries(12)


def test_posts_are_filtered_and_the_calendar_lists_each_channel(tenant: dict[str, Any]) -> None:
    post = approved(tenant)
    at = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    tenant["cm"].data(SCHEDULE, {"i": {"postId": post["id"], "at": at.isoformat()}})
    q = """query($id: ID!, $f: PostFilter, $from: DateTime!, $to: DateTime!) { tenant(id: $id) {
      posts(first: 50, filter: $f) { totalCount edges { node { id } } }
      calendar(from: $from, to: $to) { post { id } channel { id } at } } }"""
    window = {"from": (at - timedelta(hours=1)).isoformat(), "to": (at + timedelta(hours=1)).isoformat()}
    data = tenant["viewer"].data(q, {"id": tenant["id"], "f": {"status": ["SCHEDULED"],
                                 "channelId": tenant["channels"][1]}, **window})["tenant"]
    assert post["id"] in {e["node"]["id"] for e in data["posts"]["edges"]}
    entries = [e for e in data["calendar"] if e["post"]["id"] == post["id"]]
    assert sorted(e["channel"]["id"] for e in entries) == sorted(tenant["channels"])
    assert {datetime.fromisoformat(e["at"]) for e in entries} == {at}
    tenant["cm"].data(CANCEL, {"i": {"postId": post["id"]}})
