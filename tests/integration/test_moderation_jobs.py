"""The moderation jobs, run by a real worker: analysis, response targets, replies, spike detection."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from api import ids
from tests.support import Client, eventually

CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } } }"
POLICY = """mutation($i: SetModerationPolicyInput!) { setModerationPolicy(input: $i) {
  tenant { moderationPolicy { version responseTargetSeconds rules { id } } } userErrors { field message } } }"""
INGEST = """mutation($i: IngestInteractionsInput!) { ingestInteractions(input: $i) {
  accepted duplicates userErrors { field message } } }"""
DECIDE = """mutation($i: DecideInteractionInput!) { decideInteraction(input: $i) {
  interaction { status } userErrors { field message } } }"""
CORRECT = """mutation($i: CorrectSentimentInput!) { correctSentiment(input: $i) {
  interaction { sentiment sentimentCorrected } userErrors { message } } }"""
QUEUE = """query($id: ID!) { tenant(id: $id) { crisisSuggestion { reason figures }
  moderationQueue(first: 100) { edges { node { id externalId text author status breached sentiment spamScore language
    decisions { decision ruleId actor } history { type data } } } } } }"""



def at(seconds_ago: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


@pytest.fixture(scope="module")
def tenant(admin: Client, worker: Any) -> dict[str, Any]:
    tid = admin.data(CREATE, {"i": {"name": f"Jobs {uuid.uuid4().hex[:4]}", "kind": "NGO",
                                    "timezone": "Europe/Paris"}})["createTenant"]["tenant"]["id"]
    channel = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": "@jobs"}})[
        "connectChannel"]["channel"]["id"]
    policy = admin.data(POLICY, {"i": {"tenantId": tid, "responseTargetMinutes": 1, "responseTargetSeconds": 3,
                                       "crisisResponseTargetMinutes": 1, "rules": [
                                           {"name": "Spam", "minSpamScore": 0.6, "action": "MARK_SPAM"}]}})
    assert policy["setModerationPolicy"]["userErrors"] == []
    return {"id": tid, "channel": channel, "admin": admin}


def ingest(tenant: dict[str, Any], *items: tuple[str, str]) -> None:
    payload = tenant["admin"].data(INGEST, {"i": {"tenantId": tenant["id"], "items": [
        {"channelId": tenant["channel"], "kind": "COMMENT", "externalId": external, "author": f"@a{n}",
         "text": text, "receivedAt": at()} for n, (external, text) in enumerate(items)]}})["ingestInteractions"]
    assert payload["userErrors"] == []


def interactions(tenant: dict[str, Any]) -> dict[str, dict[str, Any]]:
    data = tenant["admin"].data(QUEUE, {"id": tenant["id"]})["tenant"]
    return {e["node"]["externalId"]: e["node"] for e in data["moderationQueue"]["edges"]}


def test_a_breach_is_recorded_when_a_short_target_passes_unanswered_and_not_when_answered(
    tenant: dict[str, Any]
) -> None:
    ingest(tenant, ("late", "Quelqu'un peut m'aider à évacuer ?"), ("answered", "Merci pour votre aide"))
    answered = interactions(tenant)["answered"]
    tenant["admin"].data(DECIDE, {"i": {"interactionId": answered["id"], "decision": "APPROVE"}})

    late = eventually(lambda: (i := interactions(tenant)["late"])["breached"] and i)
    assert "TargetBreached" in [h["type"] for h in late["history"]]
    assert interactions(tenant)["answered"]["breached"] is False


def test_the_analysis_fills_language_sentiment_and_spam_and_lets_waiting_rules_decide(
    tenant: dict[str, Any]
) -> None:
    ingest(tenant, ("spam", "WIN FREE BITCOIN NOW!!! Click http://bit.ly/free-btc and DM me $$$"),
           ("thanks", "Thank you so much, your volunteers were wonderful yesterday"))
    spam = eventually(lambda: (i := interactions(tenant)["spam"])["status"] == "DECIDED" and i)
    assert spam["spamScore"] >= 0.6
    assert [(d["decision"], d["actor"].startswith("rule:")) for d in spam["decisions"]] == [("MARK_SPAM", True)]
    thanks = eventually(lambda: (i := interactions(tenant)["thanks"])["sentiment"] and i)
    assert (thanks["sentiment"], thanks["language"], thanks["status"]) == ("POSITIVE", "en", "NEW")

    corrected = tenant["admin"].data(CORRECT, {"i": {"interactionId": thanks["id"], "sentiment": "NEUTRAL"}})
    assert corrected["correctSentiment"]["interaction"] == {"sentiment": "NEUTRAL", "sentimentCorrected": True}


def test_a_reply_decision_is_sent_through_the_connector(tenant: dict[str, Any]) -> None:
    ingest(tenant, ("question", "Où trouver des sacs de sable ?"))
    question = interactions(tenant)["question"]
    tenant["admin"].data(DECIDE, {"i": {"interactionId": question["id"], "decision": "REPLY",
                                        "replyText": "Au centre technique municipal, dès 8 h."}})
    sent = eventually(lambda: next((h for h in interactions(tenant)["question"]["history"]
                                    if h["type"] == "ReplySent"), None))
    assert sent["data"]["failure"] is None
    assert sent["data"]["url"].startswith("https://sandbox.parvis.dev/")


async def test_a_spike_in_volume_becomes_a_crisis_suggestion(tenant: dict[str, Any], conn: asyncpg.Connection) -> None:
    await asyncio.to_thread(ingest, tenant, *[(f"wave-{n}", f"La digue a cédé rue {n} !") for n in range(30)])
    # The check runs when the five-minute bucket is over; bring that moment forward.
    key = ids.raw(tenant["id"], "Tenant")
    for _ in range(100):  # the dispatcher derives the job as it follows the events
        job = await conn.fetchval(
            "UPDATE parvis.jobs SET due_at = now() WHERE actor = 'detect_spike' AND tenant_id = $1 "
            "AND status = 'pending' RETURNING id", key)
        if job is not None:
            break
        await asyncio.sleep(0.1)
    assert job is not None
    suggestion = await asyncio.to_thread(
        eventually, lambda: tenant["admin"].data(QUEUE, {"id": tenant["id"]})["tenant"]["crisisSuggestion"])
    assert suggestion["figures"]["volume"] >= 30
    assert "interactions in 15 minutes" in suggestion["reason"]


def test_the_workers_poll_a_mastodon_channel_and_fetch_only_what_is_new(admin: Client, worker: Any) -> None:
    from tests.fakes import serve
    from tests.fakes.mastodon import FakeMastodon

    fake = FakeMastodon(access_token="poll-token")
    with serve(fake.app) as base_url:
        # Given a mention waiting on the instance when the channel is connected
        fake.add_mention("alice@masto.test", "Vous organisez une collecte samedi ?")
        tid = admin.data(CREATE, {"i": {"name": "Masto", "kind": "NGO", "timezone": "Europe/Paris"}})[
            "createTenant"]["tenant"]["id"]
        admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "MASTODON", "handle": "@parvis_demo",
                                   "credentials": {"base_url": base_url, "access_token": "poll-token"}}})
        tenant = {"id": tid, "admin": admin}

        # Then the first poll brings it in, as text without markup
        first = eventually(lambda: interactions(tenant))
        (mention,) = first.values()
        assert mention["status"] == "NEW"
        assert mention["text"] == "@parvis_demo Vous organisez une collecte samedi ?"  # the status, tags stripped
        assert mention["author"] == "@alice@masto.test"

        # And a later poll asks only for what is newer, and brings the new item alone
        fake.add_mention("bob@masto.test", "Merci pour l'info !")
        both = eventually(lambda: len(got := interactions(tenant)) == 2 and got)
        assert len(both) == 2
        assert any("since_id" in listing for listing in fake.listings[1:])
