"""The moderation inbox over HTTP and WebSocket, against a running API and projector."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from tests.support import PASSWORD, Client, parvis_run, process_env

CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } } }"
GRANT = "mutation($i: GrantMembershipInput!) { grantMembership(input: $i) { userErrors { message } } }"
POLICY = """mutation($i: SetModerationPolicyInput!) { setModerationPolicy(input: $i) {
  tenant { moderationPolicy { version responseTargetMinutes rules { id name action anyKeywords } } }
  userErrors { code field message } position consistent } }"""
REVISE = """mutation($i: ReviseStrategyInput!) {
  reviseStrategy(input: $i) { strategy { version } userErrors { message } } }"""
INGEST = """mutation($i: IngestInteractionsInput!) { ingestInteractions(input: $i) {
  accepted duplicates userErrors { code field message } position consistent } }"""
FIELDS = """id kind externalId author text status matchedRuleIds dueBy breached assignee { email }
  decisions { decision by { email } ruleId actor rationale replyText policyVersion strategyVersion overturned }"""
QUEUE = f"""query($id: ID!, $f: ModerationFilter) {{ tenant(id: $id) {{
  moderationQueue(first: 100, filter: $f) {{ totalCount edges {{ node {{ {FIELDS} }} }} }} }} }}"""
DECIDE = f"""mutation($i: DecideInteractionInput!) {{ decideInteraction(input: $i) {{
  interaction {{ {FIELDS} }} userErrors {{ code field message }} }} }}"""
OVERTURN = f"""mutation($i: OverturnDecisionInput!) {{ overturnDecision(input: $i) {{
  interaction {{ {FIELDS} }} userErrors {{ code field message }} }} }}"""
ASSIGN = f"""mutation($i: AssignInteractionInput!) {{ assignInteraction(input: $i) {{
  interaction {{ {FIELDS} }} userErrors {{ code field message }} }} }}"""
ERASE = """mutation($i: EraseAuthorInput!) { eraseAuthor(input: $i) { erasedInteractions userErrors { message } } }"""
VERIFY = "query($id: ID!) { tenant(id: $id) { verifyHistory { ok checkedEvents firstBadPosition } } }"
STATS = """query($id: ID!, $from: DateTime!, $to: DateTime!) { tenant(id: $id) {
  moderationStats(from: $from, to: $to) { received decided byDecision medianResponseMinutes overdue } } }"""


def now(minus: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=minus)).isoformat()


def make_tenant(admin: Client, name: str) -> dict[str, Any]:
    tid = admin.data(CREATE, {"i": {"name": name, "kind": "PUBLIC_BODY", "timezone": "Europe/Paris"}})[
        "createTenant"]["tenant"]["id"]
    channel = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": f"@{name.lower()}"}})[
        "connectChannel"]["channel"]["id"]
    return {"id": tid, "channel": channel}


def item(tenant: dict[str, Any], external_id: str, text: str, author: str = "@lucie", **extra: Any) -> dict[str, Any]:
    return {"channelId": tenant["channel"], "kind": "COMMENT", "externalId": external_id, "author": author,
            "text": text, "receivedAt": now(5), **extra}


@pytest.fixture(scope="module")
def inbox(admin: Client) -> dict[str, Any]:
    """A flood mutual-aid tenant whose policy hides scams, with two community managers."""
    tenant = make_tenant(admin, f"Crues{uuid.uuid4().hex[:4]}")
    emails = []
    for _ in range(2):
        email = f"cm-{uuid.uuid4().hex[:6]}@moderation.test"
        admin.data(GRANT, {"i": {"email": email, "role": "COMMUNITY_MANAGER", "tenantId": tenant["id"],
                                 "password": PASSWORD}})
        emails.append(email)
    tenant["cm"], tenant["cm2"] = admin.login(emails[0]), admin.login(emails[1])
    tenant["cm_email"], tenant["cm2_email"] = emails
    policy = tenant["cm"].data(POLICY, {"i": {"tenantId": tenant["id"], "responseTargetMinutes": 60,
                                              "crisisResponseTargetMinutes": 15, "reason": "règles de crue",
                                              "rules": [{"name": "Arnaques", "anyKeywords": ["arnaque", "bitcoin"],
                                                         "action": "HIDE"}]}})["setModerationPolicy"]
    assert policy["userErrors"] == []
    tenant["rule"] = policy["tenant"]["moderationPolicy"]["rules"][0]["id"]
    return tenant


def queue(client: Client, tenant: dict[str, Any], **flt: Any) -> list[dict[str, Any]]:
    data = client.data(QUEUE, {"id": tenant["id"], "f": flt or None})["tenant"]["moderationQueue"]
    return [e["node"] for e in data["edges"]]


def test_a_matching_comment_is_hidden_by_its_rule_within_the_ingestion_call(inbox: dict[str, Any]) -> None:
    payload = inbox["cm"].data(INGEST, {"i": {"tenantId": inbox["id"], "items": [
        item(inbox, "c-1", "Investissez en BITCOIN, c'est garanti !"),
        item(inbox, "c-2", "Je peux héberger une famille à Nantes", kind="OFFER", author="@marc"),
    ]}})["ingestInteractions"]
    assert (payload["accepted"], payload["duplicates"], payload["userErrors"]) == (2, 0, [])
    assert payload["consistent"] is True

    by_id = {i["externalId"]: i for i in queue(inbox["cm"], inbox)}
    scam, offer = by_id["c-1"], by_id["c-2"]
    assert scam["status"] == "DECIDED"
    assert scam["matchedRuleIds"] == [inbox["rule"]]
    (decision,) = scam["decisions"]
    assert decision["decision"] == "HIDE"
    assert decision["by"] is None
    assert decision["ruleId"] == inbox["rule"]
    assert decision["policyVersion"] == 1
    assert decision["actor"].startswith("rule:")  # rule:<rule id>@<policy version>
    assert decision["actor"].endswith("@1")
    assert offer["status"] == "NEW"
    assert offer["kind"] == "OFFER"
    assert offer["author"] == "@marc"


def test_a_decision_records_the_versions_in_force_and_an_overturn_keeps_both(inbox: dict[str, Any]) -> None:
    inbox["cm"].data(INGEST, {"i": {"tenantId": inbox["id"], "items": [item(inbox, "v-1", "Où déposer des sacs ?")]}})
    inbox["cm"].data(REVISE, {"i": {"tenantId": inbox["id"], "reason": "crue de décembre", "objectives": [],
                                    "personas": [], "editorialLine": {}}})
    inbox["cm"].data(POLICY, {"i": {"tenantId": inbox["id"], "responseTargetMinutes": 30,
                                    "crisisResponseTargetMinutes": 10, "rules": [
                                        {"name": "Arnaques", "anyKeywords": ["arnaque"], "action": "HIDE"}]}})
    target = next(i for i in queue(inbox["cm"], inbox) if i["externalId"] == "v-1")

    decided = inbox["cm"].data(DECIDE, {"i": {"interactionId": target["id"], "decision": "REPLY",
                                              "replyText": "À la mairie, salle B.", "rationale": "info utile"}})
    first = decided["decideInteraction"]["interaction"]["decisions"]
    assert [(d["decision"], d["policyVersion"], d["strategyVersion"], d["by"]["email"]) for d in first] == [
        ("REPLY", 2, 1, inbox["cm_email"])]

    again = inbox["cm"].data(DECIDE, {"i": {"interactionId": target["id"], "decision": "HIDE"}})
    assert again["decideInteraction"]["userErrors"][0]["code"] == "INVALID_TRANSITION"

    overturned = inbox["cm2"].data(OVERTURN, {"i": {"interactionId": target["id"], "decision": "ESCALATE",
                                                    "escalateTo": "prefecture@crues.test",
                                                    "rationale": "à valider par la préfecture"}})
    decisions = overturned["overturnDecision"]["interaction"]["decisions"]
    assert [(d["decision"], d["overturned"]) for d in decisions] == [("REPLY", True), ("ESCALATE", False)]
    assert decisions[1]["by"]["email"] == inbox["cm2_email"]
    assert overturned["overturnDecision"]["interaction"]["status"] == "ESCALATED"


def test_bad_input_names_the_field_and_an_assignee_must_moderate_the_tenant(
    inbox: dict[str, Any], admin: Client
) -> None:
    bad = inbox["cm"].data(INGEST, {"i": {"tenantId": inbox["id"], "items": [
        item(inbox, "b-1", "ok"), {**item(inbox, "b-2", "x"), "receivedAt": "2026-01-01T10:00:00"}]}})
    assert bad["ingestInteractions"]["userErrors"][0]["field"] == ["input", "items", "1", "receivedAt"]
    assert bad["ingestInteractions"]["accepted"] == 0
    assert all(i["externalId"] != "b-1" for i in queue(inbox["cm"], inbox))  # nothing of the call was stored

    escalate = inbox["cm"].data(INGEST, {"i": {"tenantId": inbox["id"], "items": [item(inbox, "a-1", "Aidez-moi")]}})
    assert escalate["ingestInteractions"]["accepted"] == 1
    target = next(i for i in queue(inbox["cm"], inbox) if i["externalId"] == "a-1")
    me = inbox["cm2"].data("{ me { id } }")["me"]["id"]
    assigned = inbox["cm"].data(ASSIGN, {"i": {"interactionId": target["id"], "assigneeId": me}})
    assert assigned["assignInteraction"]["interaction"]["assignee"]["email"] == inbox["cm2_email"]
    assert assigned["assignInteraction"]["interaction"]["status"] == "ASSIGNED"
    assert [i["externalId"] for i in queue(inbox["cm"], inbox, assigneeId=me)] == ["a-1"]
    no_reply = inbox["cm"].data(DECIDE, {"i": {"interactionId": target["id"], "decision": "REPLY"}})
    assert no_reply["decideInteraction"]["userErrors"][0]["field"] == ["input", "replyText"]


async def test_a_thousand_items_in_one_call_and_the_same_call_again_stores_nothing(
    inbox: dict[str, Any], conn: asyncpg.Connection
) -> None:
    batch = [item(inbox, f"bulk-{n}", f"Message {n} : la route est coupée ?", author=f"@voisin{n % 37}")
             for n in range(1000)]

    def ingest(items: list[dict[str, Any]]) -> dict[str, Any]:
        return inbox["cm"].data(INGEST, {"i": {"tenantId": inbox["id"], "items": items}})[  # type: ignore[no-any-return]
            "ingestInteractions"]

    first = await asyncio.to_thread(ingest, batch)
    assert (first["accepted"], first["duplicates"], first["userErrors"]) == (1000, 0, [])
    head = await conn.fetchval("SELECT max(notification_id) FROM parvis_events")
    second = await asyncio.to_thread(ingest, batch)
    assert (second["accepted"], second["duplicates"]) == (0, 1000)
    assert await conn.fetchval("SELECT max(notification_id) FROM parvis_events") == head
    too_many = await asyncio.to_thread(ingest, batch + batch[:1])
    assert too_many["userErrors"][0]["field"] == ["input", "items"]


async def test_erasing_an_author_leaves_their_data_nowhere_and_the_history_verifies(
    inbox: dict[str, Any], admin: Client, conn: asyncpg.Connection
) -> None:
    handle, secret = "@jeanne.secret", "J'habite au 12 rue des Saules, inondée"
    await asyncio.to_thread(inbox["cm"].data, INGEST, {"i": {"tenantId": inbox["id"], "items": [
        item(inbox, "e-1", secret, author=handle), item(inbox, "e-2", f"{secret}, encore", author=handle)]}})

    erased = await asyncio.to_thread(inbox["cm"].data, ERASE, {"i": {"tenantId": inbox["id"], "author": handle,
                                                                     "reason": "demande RGPD"}})
    assert erased["eraseAuthor"] == {"erasedInteractions": 2, "userErrors": []}

    shown = [i for i in await asyncio.to_thread(queue, inbox["cm"], inbox) if i["externalId"] in ("e-1", "e-2")]
    assert {(i["author"], i["text"]) for i in shown} == {("[erased]", "[erased]")}
    columns = await conn.fetch(
        "SELECT table_schema || '.' || table_name AS t, column_name AS c, data_type AS d "
        "FROM information_schema.columns WHERE table_schema IN ('read', 'public', 'parvis', 'auth') "
        "AND data_type IN ('text', 'jsonb', 'bytea')")
    assert {"public.parvis_events", "read.interactions", "read.history"} <= {c["t"] for c in columns}
    for t, c, d in columns:
        # Bytes are searched as bytes (the events' state), the rest as text.
        match = f"position(convert_to($1, 'UTF8') in {c})" if d == "bytea" else f"position($1 in {c}::text)"
        for needle in (handle, "rue des Saules"):
            found = await conn.fetchval(f"SELECT count(*) FROM {t} WHERE {match} > 0", needle)
            assert found == 0, f"{needle!r} found in {t}.{c}"
    # (The search itself finds what is there: the tenant's name is in its creation event's bytes.)
    assert await conn.fetchval(
        "SELECT count(*) FROM public.parvis_events WHERE position(convert_to($1, 'UTF8') in state) > 0",
        "PUBLIC_BODY") > 0
    verification = (await asyncio.to_thread(admin.data, VERIFY, {"id": inbox["id"]}))["tenant"]["verifyHistory"]
    assert verification["ok"] is True


async def test_a_subscriber_receives_its_tenants_interactions_and_never_another_s(
    server: str, admin: Client, inbox: dict[str, Any]
) -> None:
    other = await asyncio.to_thread(make_tenant, admin, f"Autre{uuid.uuid4().hex[:4]}")
    url = server.replace("http://", "ws://")
    query = "subscription($t: ID!) { moderationQueue(tenantId: $t) { externalId text } }"

    async def subscriber(tenant_id: str) -> Any:
        ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {admin.token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query,
                                                                              "variables": {"t": tenant_id}}}))
        return ws

    ws_a, ws_b = await subscriber(inbox["id"]), await subscriber(other["id"])
    try:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(admin.data, INGEST, {"i": {"tenantId": other["id"], "items": [
            item(other, "b-only", "pour B seulement")]}})
        await asyncio.to_thread(admin.data, INGEST, {"i": {"tenantId": inbox["id"], "items": [
            item(inbox, "a-only", "pour A seulement")]}})
        got_a = json.loads(await asyncio.wait_for(ws_a.recv(), 10))["payload"]["data"]["moderationQueue"]
        got_b = json.loads(await asyncio.wait_for(ws_b.recv(), 10))["payload"]["data"]["moderationQueue"]
        assert got_a == {"externalId": "a-only", "text": "pour A seulement"}
        assert got_b == {"externalId": "b-only", "text": "pour B seulement"}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws_a.recv(), 1.5)  # nothing of B ever reaches A
    finally:
        await ws_a.close()
        await ws_b.close()


def test_the_statistics_count_received_decided_and_median_response(inbox: dict[str, Any]) -> None:
    stats = inbox["cm"].data(STATS, {"id": inbox["id"], "from": now(3600), "to": now(-60)})["tenant"][
        "moderationStats"]
    assert stats["received"] >= 1000
    assert stats["byDecision"]["HIDE"] >= 1
    assert stats["decided"] >= 1
    assert stats["medianResponseMinutes"] is not None


def test_an_inbound_webhook_is_verified_and_stores_nothing_when_the_signature_is_wrong(
    inbox: dict[str, Any], settings: Any, server: str
) -> None:
    from api import ids
    from api.hooks import hook_secret, sign
    from parvis import wiring

    url = server.replace("/graphql", f"/hooks/channels/{inbox['channel']}")
    secret = hook_secret(wiring.hook_key(settings), ids.raw(inbox["channel"], "Channel"))
    cli = parvis_run("hooks", "secret", inbox["channel"], env=process_env(settings.database_url, settings.redis_url))
    assert f"secret: {secret}" in cli.stdout
    body = json.dumps({"items": [{"kind": "MENTION", "externalId": "hook-1", "author": "@radio.locale",
                                  "text": "Vous relayez l'appel aux bénévoles ?", "receivedAt": now(1)}]}).encode()
    stamp = str(int(time.time()))

    def post(signature: str, timestamp: str = stamp) -> httpx.Response:
        return httpx.post(url, content=body, headers={"x-parvis-timestamp": timestamp,
                                                      "x-parvis-signature": signature,
                                                      "content-type": "application/json"})

    wrong = post(sign("not-the-secret", stamp, body))
    assert wrong.status_code == 401
    stale_stamp = str(int(time.time()) - 3600)
    assert post(sign(secret, stale_stamp, body), stale_stamp).status_code == 401
    assert all(i["externalId"] != "hook-1" for i in queue(inbox["cm"], inbox))

    accepted = post(sign(secret, stamp, body))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] == 1
    assert post(sign(secret, stamp, body)).json() == {**accepted.json(), "accepted": 0, "duplicates": 1,
                                                       "position": None}
    mention = next(i for i in queue(inbox["cm"], inbox, kind=["MENTION"]) if i["externalId"] == "hook-1")
    assert mention["author"] == "@radio.locale"
