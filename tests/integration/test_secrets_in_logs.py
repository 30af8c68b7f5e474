"""Secrets and personal data stay where they belong: nowhere in the logs, sealed in the events, and in clear
only in the read model that serves them; a rotation of the master secret leaves the old key useless."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.fakes import serve
from tests.fakes.mastodon import FakeMastodon
from tests.support import (
    Client,
    eventually,
    free_port,
    fresh_database,
    parvis,
    parvis_run,
    process_env,
    register_agency,
    stop,
    wait_http,
)

pytestmark = pytest.mark.slow

RUN = uuid.uuid4().hex[:10]
# Unique strings planted through the API: what is searched for in every log line, table and Redis key.
TOKEN = f"tok3n{RUN}secret"  # a channel's access token: clear nowhere, ever
PASSWORD = f"pw{RUN}-password"  # an admin's password: clear nowhere, ever
TEXT = f"Bonjour, je voudrais un remboursement msg{RUN}"  # a commenter's message
AUTHOR = f"@author{RUN}"  # the commenter's handle
MENTION_TEXT = f"mention{RUN} via Mastodon"  # a commenter's message fetched from the platform by the worker
MENTION_AUTHOR = f"fan{RUN}@social.example"
OLD_KEY = "old-master-secret-of-the-rotation-test-0123456789"
NEW_KEY = "new-master-secret-of-the-rotation-test-9876543210"

CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
APPROVALS = "mutation($i: SetApprovalPolicyInput!) { setApprovalPolicy(input: $i) { userErrors { message } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } userErrors { message } } }"
POLICY = "mutation($i: SetModerationPolicyInput!) { setModerationPolicy(input: $i) { userErrors { message } } }"
INGEST = "mutation($i: IngestInteractionsInput!) { ingestInteractions(input: $i) { accepted userErrors { message } } }"
DECIDE = """mutation($i: DecideInteractionInput!) { decideInteraction(input: $i) {
  interaction { status } userErrors { field message } } }"""
QUEUE = """query($id: ID!) { tenant(id: $id) { moderationQueue(first: 100) { edges { node {
  id externalId text author status sentiment history { type data } } } } } }"""
HISTORY = "query($id: ID!) { tenant(id: $id) { history(first: 100) { edges { node { type data } } } } }"
CHANNELS = "query($id: ID!) { tenant(id: $id) { channels { id handle health } } }"
DRAFT = "mutation($i: DraftPostInput!) { draftPost(input: $i) { post { id } userErrors { message } } }"
SUBMIT = "mutation($i: PostActionInput!) { submitPost(input: $i) { post { status } userErrors { message } } }"
SCHEDULE = "mutation($i: SchedulePostInput!) { schedulePost(input: $i) { post { status } userErrors { message } } }"
VERIFY = """query($id: ID!) { tenant(id: $id) { verifyHistory {
  ok firstBadPosition checkpointsChecked checkpointError } } }"""
POST = "query($id: ID!) { node(id: $id) { ... on Post { status variants { externalId } } } }"



@dataclass
class Deployment:
    """API, projector and worker as separate processes at DEBUG, each logging to its own files."""

    database_url: str
    redis_url: str
    logs: Path
    namespace: str = field(default_factory=lambda: f"parvis-secrets-{uuid.uuid4().hex[:8]}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0

    def env(self, secret: str, previous: str = "") -> dict[str, str]:
        return process_env(
            self.database_url, self.redis_url, PARVIS_SECRET_KEY=secret, PARVIS_PREVIOUS_SECRET_KEYS=previous,
            PARVIS_LOG_LEVEL="DEBUG", PARVIS_QUEUE_NAMESPACE=self.namespace, PARVIS_JOB_REDELIVER_SECONDS="3",
            PARVIS_POLL_SECONDS="1", PARVIS_WORKER_THREADS="2", PARVIS_CHECKPOINT_SECONDS="1",
        )

    def run(self, *args: str, secret: str, previous: str = "") -> subprocess.CompletedProcess[str]:
        """A one-off command; its output is kept with the logs."""
        done = parvis_run(*args, env=self.env(secret, previous))
        self.started += 1
        (self.logs / f"{self.started:02d}-{args[0]}.log").write_text(done.stdout + done.stderr)
        return done

    def start(self, secret: str, previous: str = "", *, worker: bool = True) -> Client:
        port = free_port()
        for args in (("project",), ("serve", "--port", str(port)), ("work",))[: 3 if worker else 2]:
            self.started += 1
            with (self.logs / f"{self.started:02d}-{args[0]}.log").open("wb") as out:
                self.procs.append(parvis(*args, env=self.env(secret, previous), stdout=out, stderr=subprocess.STDOUT))
        wait_http(f"http://127.0.0.1:{port}/healthz")
        return Client(f"http://127.0.0.1:{port}/graphql")

    def stop(self) -> None:
        stop(self.procs)
        self.procs.clear()


@dataclass
class Planted:
    deployment: Deployment
    mastodon: FakeMastodon
    mastodon_url: str
    email: str
    tenant_id: str
    channel_id: str
    queue: dict[str, dict[str, Any]]
    history: list[dict[str, Any]]
    tokens: list[str]


@pytest.fixture(scope="module")
def planted(servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    """A deployment of its own (database and Redis) driven through every path a secret or a message takes."""
    from parvis.embedded import start_redis

    tmp = tmp_path_factory.mktemp("secrets")
    logs = tmp / "logs"
    logs.mkdir()
    fake = FakeMastodon(access_token=TOKEN)
    with fresh_database(servers[0]) as database_url, start_redis(tmp / "redis", port=free_port()) as own_redis, \
            serve(fake.app) as mastodon_url:
        deployment = Deployment(database_url, own_redis.url, logs)
        email = f"admin{RUN}@secrets.test"
        register_agency(database_url, own_redis.url, tmp, email, PASSWORD, secret_key=OLD_KEY)
        try:
            api = deployment.start(OLD_KEY)
            yield drive(deployment, api, fake, mastodon_url, email)
        finally:
            deployment.stop()


def drive(deployment: Deployment, api: Client, fake: FakeMastodon, mastodon_url: str, email: str) -> Planted:
    admin = api.login(email, PASSWORD)
    tid = admin.data(CREATE, {"i": {"name": "Secrets", "kind": "NGO", "timezone": "Europe/Paris"}})[
        "createTenant"]["tenant"]["id"]
    admin.data(APPROVALS, {"i": {"tenantId": tid, "internalApprovals": 0, "clientApproval": False}})
    policy = admin.data(POLICY, {"i": {"tenantId": tid, "responseTargetMinutes": 60, "crisisResponseTargetMinutes": 15,
                                       "rules": [{"name": "Remboursements", "anyKeywords": ["remboursement"],
                                                  "action": "HIDE"}]}})
    assert policy["setModerationPolicy"]["userErrors"] == []
    connected = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "MASTODON", "handle": "@parvis_demo",
                                           "credentials": {"base_url": mastodon_url, "access_token": TOKEN}}})
    assert connected["connectChannel"]["userErrors"] == []
    channel_id = connected["connectChannel"]["channel"]["id"]
    # The worker checks the credentials against the platform (with the token), then polls it for mentions.
    eventually(lambda: admin.data(CHANNELS, {"id": tid})["tenant"]["channels"][0]["health"] == "OK")
    fake.add_mention(MENTION_AUTHOR, MENTION_TEXT)
    ingested = admin.data(INGEST, {"i": {"tenantId": tid, "items": [
        {"channelId": channel_id, "kind": "COMMENT", "externalId": f"c-{RUN}", "author": AUTHOR, "text": TEXT,
         "receivedAt": datetime.now(UTC).isoformat()}]}})["ingestInteractions"]
    assert ingested == {"accepted": 1, "userErrors": []}

    def analysed() -> dict[str, dict[str, Any]] | None:
        edges = admin.data(QUEUE, {"id": tid})["tenant"]["moderationQueue"]["edges"]
        found = {e["node"]["text"]: e["node"] for e in edges}
        ready = len(found) == 2 and all(n["sentiment"] for n in found.values())
        return found if ready else None

    queue = eventually(analysed)
    refusals(api, admin, tid, channel_id, email)
    assert queue[TEXT]["status"] == "DECIDED"  # the rule hid it
    mention = next(node for text, node in queue.items() if f"mention{RUN}" in text)
    decided = admin.data(DECIDE, {"i": {"interactionId": mention["id"], "decision": "APPROVE",
                                        "rationale": "rien à signaler"}})["decideInteraction"]
    assert decided["userErrors"] == []
    post = publish(admin, tid, channel_id, "Merci à tous")
    assert post["variants"][0]["externalId"] in fake.statuses
    queue = eventually(analysed)
    history = [e["node"] for e in admin.data(HISTORY, {"id": tid})["tenant"]["history"]["edges"]]
    return Planted(deployment, fake, mastodon_url, email, tid, channel_id, queue, history, [admin.token or ""])


def refusals(api: Client, admin: Client, tid: str, channel_id: str, email: str) -> None:
    """Requests refused on the way, each carrying a marker: errors are where inputs tend to leak into logs."""
    wrong = api.execute("mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
                        {"e": email, "p": PASSWORD + "-wrong"})
    assert wrong["errors"]
    bad_enum = admin.execute(CONNECT, {"i": {"tenantId": tid, "platform": "NOPE", "handle": f"@h{RUN}",
                                             "credentials": {"access_token": TOKEN}}})
    assert bad_enum["errors"]
    not_object = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "MASTODON", "handle": "@x",
                                            "credentials": [TOKEN]}})
    assert not_object["connectChannel"]["userErrors"]
    too_long = admin.data(INGEST, {"i": {"tenantId": tid, "items": [
        {"channelId": channel_id, "kind": "COMMENT", "externalId": f"long-{RUN}", "author": AUTHOR,
         "text": TEXT * 400, "receivedAt": datetime.now(UTC).isoformat()}]}})["ingestInteractions"]
    assert too_long["userErrors"]
    future = admin.data(INGEST, {"i": {"tenantId": tid, "items": [
        {"channelId": channel_id, "kind": "COMMENT", "externalId": f"future-{RUN}", "author": AUTHOR,
         "text": TEXT, "receivedAt": "2999-01-01T00:00:00Z"}]}})["ingestInteractions"]
    assert future["userErrors"]


def publish(admin: Client, tid: str, channel_id: str, body: str) -> dict[str, Any]:
    """A post published on the channel now: the worker opens the credentials and the platform checks the token."""
    post_id = admin.data(DRAFT, {"i": {"tenantId": tid, "variants": [{"channelId": channel_id, "body": body}]}})[
        "draftPost"]["post"]["id"]
    assert admin.data(SUBMIT, {"i": {"postId": post_id}})["submitPost"]["post"]["status"] == "APPROVED"
    at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    scheduled = admin.data(SCHEDULE, {"i": {"postId": post_id, "at": at}})
    assert scheduled["schedulePost"]["userErrors"] == [], scheduled
    return eventually(lambda: (p := admin.data(POST, {"id": post_id})["node"])["status"] == "PUBLISHED" and p)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------- searching


def log_hits(logs: Path, markers: list[str]) -> list[tuple[str, int, str]]:
    """(file, line number, marker) of every log line holding a marker."""
    hits = []
    for path in sorted(logs.iterdir()):
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            hits += [(path.name, n, m) for m in markers if m in line]
    return hits


def _text(value: Any) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def table_hits(database_url: str, markers: list[str]) -> set[tuple[str, str, str]]:
    """(table, column, marker) of every value, in every table of every schema, that holds a marker."""
    hits = set()
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()
        assert ("public", "parvis_events") in tables
        for schema, table in tables:
            cursor = conn.execute(f'SELECT * FROM "{schema}"."{table}"')
            columns = [d.name for d in cursor.description or ()]
            for row in cursor:
                for column, value in zip(columns, row, strict=True):
                    text = _text(value)
                    hits |= {(f"{schema}.{table}", column, m) for m in markers if m in text}
    return hits


def _redis_values(client: redis.Redis, key: bytes) -> list[Any]:
    kind = client.type(key).decode()
    if kind == "string":
        return [client.get(key)]
    if kind == "list":
        return list(client.lrange(key, 0, -1))
    if kind == "hash":
        return [item for pair in client.hgetall(key).items() for item in pair]
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return list(client.zrange(key, 0, -1))
    if kind == "stream":
        return [json.dumps(entry, default=_text) for entry in client.xrange(key)]
    return []


def redis_hits(redis_url: str, markers: list[str]) -> set[tuple[str, str]]:
    """(key, marker) of every Redis value holding a marker."""
    hits = set()
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(count=500):
            values = _redis_values(client, key)
            text = " ".join(_text(v) for v in values if v is not None)
            hits |= {(key.decode(), m) for m in markers if m in text}
    finally:
        client.close()
    return hits


def test_secrets_never_appear_in_clear_and_messages_only_in_the_inbox_read_model(planted: Planted) -> None:
    # Given a deployment driven through connection, checks, polling, ingestion, analysis, decision and publication
    deployment = planted.deployment
    assert planted.queue[TEXT]["author"] == AUTHOR  # the API serves the commenters' data in clear
    mention = next(node for text, node in planted.queue.items() if f"mention{RUN}" in text)
    assert f"fan{RUN}" in mention["author"]
    assert planted.mastodon.requests or planted.mastodon.statuses  # the token was used against the platform
    deployment.stop()  # every line flushed
    lines = sum(len(p.read_text(errors="replace").splitlines()) for p in deployment.logs.iterdir())
    assert lines > 100, "DEBUG logs captured"

    secrets = [TOKEN, PASSWORD, *planted.tokens]
    personal = [f"msg{RUN}", f"author{RUN}", f"mention{RUN}", f"fan{RUN}"]

    # Then no log line of any process holds a secret or a commenter's data
    assert log_hits(deployment.logs, secrets + personal) == []
    # And no table holds a secret in clear, Redis neither
    assert {h for h in table_hits(deployment.database_url, secrets + personal) if h[2] in secrets} == set()
    assert redis_hits(deployment.redis_url, secrets + personal) == set()
    # And the commenters' data is in clear in the inbox read model's author and text only: the events hold it
    # sealed under the author's key, the history redacted
    found = table_hits(deployment.database_url, personal)
    assert found, "the read model holds the messages"
    assert {(table, column) for table, column, _ in found} <= {("read.interactions", "author"),
                                                                ("read.interactions", "text")}
    assert {m for _, _, m in found} == set(personal)
    assert not any(m in json.dumps(planted.history) for m in secrets + personal)
    assert any(e["type"] == "Received" for e in planted.history)


def test_a_rotated_master_secret_is_no_longer_needed_and_the_old_one_opens_nothing(planted: Planted) -> None:
    from api import ids
    from parvis import wiring
    from parvis.crypto import SecretBox, UnreadableSecret, personal_cipher
    from parvis.settings import Settings

    deployment = planted.deployment
    deployment.stop()  # the worker signed checkpoints of the histories with the old key meanwhile

    # When the processes restart with the new key (the old one listed as previous) and the rotation runs
    api = deployment.start(NEW_KEY, previous=OLD_KEY, worker=False)
    api.login(planted.email, PASSWORD)  # the hash sealed under the old key opens with the previous one
    rotated = deployment.run("secrets", "rotate", secret=NEW_KEY, previous=OLD_KEY)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "rotated: 1 channel secrets, " in rotated.stdout
    assert " checkpoints, " in rotated.stdout.splitlines()[0]
    assert "still needing a previous key: none" in rotated.stdout
    deployment.stop()

    # Then, restarted with the new key alone, everything works: logins, the channel's token, the checkpoints
    api = deployment.start(NEW_KEY)
    admin = api.login(planted.email, PASSWORD)
    post = publish(admin, planted.tenant_id, planted.channel_id, "Après la rotation")
    assert post["variants"][0]["externalId"] in planted.mastodon.statuses  # the platform accepted the token
    ingested = admin.data(INGEST, {"i": {"tenantId": planted.tenant_id, "items": [
        {"channelId": planted.channel_id, "kind": "COMMENT", "externalId": f"after-{RUN}", "author": AUTHOR,
         "text": "Encore moi", "receivedAt": datetime.now(UTC).isoformat()}]}})["ingestInteractions"]
    assert ingested["accepted"] == 1
    verified = admin.data(VERIFY, {"id": planted.tenant_id})["tenant"]["verifyHistory"]
    assert verified["ok"], verified
    assert verified["checkpointsChecked"] >= 1
    assert verified["checkpointError"] is None
    deployment.stop()

    # And the old key alone opens none of what is in force
    settings = Settings(env="test", database_url=deployment.database_url, redis_url=deployment.redis_url,
                        secret_key=NEW_KEY)
    domain = wiring.domain(settings)
    try:
        channel = domain.channel(ids.raw(planted.channel_id, "Channel"))
        assert TOKEN in SecretBox(NEW_KEY.encode()).open(channel.credentials)
        with pytest.raises(UnreadableSecret):
            SecretBox(OLD_KEY.encode()).open(channel.credentials)
        with psycopg.connect(deployment.database_url) as conn:
            wrapped = [bytes(w) for (w,) in conn.execute("SELECT wrapped FROM parvis.author_keys")]
            wrapped += [bytes(w) for (w,) in conn.execute("SELECT wrapped FROM parvis.keyring")]
            refs = conn.execute("SELECT DISTINCT author_ref FROM read.interactions WHERE tenant_id = %s",
                                (channel.tenant_key,)).fetchall()
        assert wrapped
        assert all(personal_cipher(NEW_KEY.encode()).is_current(w) for w in wrapped)
        assert not any(personal_cipher(OLD_KEY.encode()).is_current(w) for w in wrapped)
        # The same author keeps the same reference across the rotation (an erasure still finds everything)
        assert len(refs) == 2  # the planted commenter (twice) and the Mastodon one
    finally:
        domain.close()

