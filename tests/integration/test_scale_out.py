"""Two processes of each kind on one machine, one of each killed under load: no work lost, nothing done twice.

Two `parvis serve` behind a local load balancer (tests/lb.py), two `parvis project` (one active, one standby), two
`parvis work`, on a database of the test's own. Front ends (threads with their own HTTP clients) draft, submit,
approve and schedule posts due a few seconds later on a fake Mastodon, ingest comments and read, through the
balancer; they send every command with an idempotency key and retry what a front end may retry (a cut connection,
a 502 or 503). Meanwhile one API, the active projector and the worker holding a publication in flight are killed
(SIGKILL), a few seconds apart."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
import psycopg
import pytest

from tests.fakes.mastodon import FakeMastodon
from tests.lb import Balancer
from tests.support import (
    PASSWORD,
    Processes,
    eventually,
    free_port,
    fresh_database,
    process_env,
    register_agency,
    wait_http,
)

pytestmark = pytest.mark.slow

ADMIN = "admin@pannes.test"
CM = "cm@pannes.test"
CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } userErrors { message } } }"
POLICY = "mutation($i: SetApprovalPolicyInput!) { setApprovalPolicy(input: $i) { userErrors { message } } }"
GRANT = "mutation($i: GrantMembershipInput!) { grantMembership(input: $i) { userErrors { message } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } userErrors { message } } }"
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
PAYLOAD = "userErrors { code message } consistent"
DRAFT = f"mutation($i: DraftPostInput!) {{ draftPost(input: $i) {{ post {{ id }} {PAYLOAD} }} }}"
SUBMIT = f"mutation($i: PostActionInput!) {{ submitPost(input: $i) {{ post {{ status }} {PAYLOAD} }} }}"
APPROVE = f"mutation($i: ReviewPostInput!) {{ approvePost(input: $i) {{ post {{ status }} {PAYLOAD} }} }}"
SCHEDULE = f"mutation($i: SchedulePostInput!) {{ schedulePost(input: $i) {{ post {{ status }} {PAYLOAD} }} }}"
INGEST = """mutation($i: IngestInteractionsInput!) { ingestInteractions(input: $i) {
  accepted duplicates userErrors { code message } consistent } }"""
POST = "query($id: ID!) { node(id: $id) { ... on Post { status } } }"
QUEUE = "query($id: ID!) { tenant(id: $id) { moderationQueue(first: 5) { totalCount } } }"
POSTS = """query($id: ID!, $after: String) { tenant(id: $id) { posts(first: 100, after: $after) {
  totalCount pageInfo { hasNextPage endCursor } edges { node { id status variants { externalId } } } } } }"""
BATCH = 3  # comments per ingestion call
SCHEDULE_AHEAD = 10  # seconds from a post's scheduling to its publication (a retried scheduling must still be early)
STILL_RUNNING = "a request with this idempotency key is still running"
KEY_HELD = "key still held by the cut attempt"  # that answer, retried until the reservation lapses
# Each scheduled post's events: every command once, one publication.
LIFE = Counter(["Drafted", "Submitted", "Approved", "Scheduled", "PublishingStarted", "VariantPublished", "Published"])


# ------------------------------------------------------------------------------------------------ the clients


@dataclass
class Tally:
    """What the front ends did and saw; shared by their threads."""

    operations: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)  # by what was retried
    retried: int = 0  # calls that needed a retry (each then succeeded, or is among the failures)
    late: int = 0  # mutations that answered `consistent: false` (the read models had not caught up in time)
    failures: list[str] = field(default_factory=list)
    clients: list[FrontEnd] = field(default_factory=list)  # closed whatever the outcome
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, counter: Counter[str], key: str) -> None:
        with self.lock:
            counter[key] += 1


class FrontEnd:
    """A front end's HTTP client, through the balancer: it retries a command (same input, same idempotency key)
    whose answer it did not get, as the README says it may, and counts every retry."""

    patience = 45.0  # seconds of retries before a call counts as failed

    def __init__(self, url: str, token: str, tally: Tally) -> None:
        self.url = url
        self.token = token
        self.tally = tally
        # Kept-alive connections are dropped before the server's own keep-alive limit (5 s) closes them under us.
        self.http = httpx.Client(timeout=20, limits=httpx.Limits(keepalive_expiry=2))
        tally.clients.append(self)

    def call(self, name: str, query: str, variables: dict[str, Any]) -> dict[str, Any] | None:
        """The data of a successful answer, or None (recorded as a failure)."""
        started = time.monotonic()
        retried = False
        while True:
            reason = self._attempt(name, query, variables)
            if isinstance(reason, dict):
                self.tally.count(self.tally.operations, name)
                return reason
            if reason is None:
                return None
            if time.monotonic() - started > self.patience:
                self.fail(name, f"still failing after {self.patience:.0f}s of retries: {reason}")
                return None
            self.tally.count(self.tally.retries, reason)
            if not retried:
                retried = True
                with self.tally.lock:
                    self.tally.retried += 1
            time.sleep(1.0 if reason == KEY_HELD else 0.2)

    def _attempt(self, name: str, query: str, variables: dict[str, Any]) -> dict[str, Any] | str | None:
        """The data, or why to retry (a string), or None after recording a failure."""
        headers = {"authorization": f"Bearer {self.token}"}
        try:
            response = self.http.post(self.url, json={"query": query, "variables": variables}, headers=headers)
        except httpx.TransportError as exc:
            return type(exc).__name__
        if response.status_code in (502, 503):
            return f"HTTP {response.status_code}"
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict) or body.get("errors"):
            self.fail(name, f"HTTP {response.status_code}: {response.text[:300]}")
            return None
        data: dict[str, Any] = body["data"]
        payload = next(iter(data.values()))
        if isinstance(payload, dict) and "userErrors" in payload:
            if [e["message"] for e in payload["userErrors"]] == [STILL_RUNNING]:
                return KEY_HELD
            if payload["userErrors"]:
                self.fail(name, f"user errors: {payload['userErrors']}")
                return None
            if payload.get("consistent") is False:
                with self.tally.lock:
                    self.tally.late += 1
        return data

    def fail(self, name: str, what: str) -> None:
        with self.tally.lock:
            self.tally.failures.append(f"{name}: {what}")

    def close(self) -> None:
        self.http.close()


@dataclass
class Work:
    """What the front ends saw accepted."""

    drafted: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)
    ingested: list[str] = field(default_factory=list)  # external ids
    duplicates: int = 0  # interactions an ingestion call answered as already there (a retried call's first try)


def editorial(cm: FrontEnd, admin: FrontEnd, tid: str, channel: str, n: int, work: Work, stop: threading.Event) -> None:
    """The community manager drafts, submits and schedules posts; the admin approves them (not their own)."""
    i = 0
    while not stop.is_set():
        key = f"e{n}-{i}"
        i += 1
        drafted = cm.call("draftPost", DRAFT, {"i": {"tenantId": tid, "idempotencyKey": f"draft-{key}", "variants": [
            {"channelId": channel, "body": f"Collecte de sang, rendez-vous n°{key}"}]}})
        if drafted is None:
            continue
        post_id = drafted["draftPost"]["post"]["id"]
        work.drafted.append(post_id)
        at = (datetime.now(UTC) + timedelta(seconds=SCHEDULE_AHEAD)).isoformat()
        steps = [(cm, "submitPost", SUBMIT, {"postId": post_id, "idempotencyKey": f"submit-{key}"}),
                 (admin, "approvePost", APPROVE, {"postId": post_id, "idempotencyKey": f"approve-{key}"}),
                 (cm, "schedulePost", SCHEDULE, {"postId": post_id, "at": at, "idempotencyKey": f"schedule-{key}"})]
        if all(who.call(name, query, {"i": args}) is not None for who, name, query, args in steps):
            work.scheduled.append(post_id)
        cm.call("post", POST, {"id": post_id})


def moderation(cm: FrontEnd, tid: str, channel: str, n: int, work: Work, stop: threading.Event) -> None:
    """Comments arrive in small batches (ingestion is idempotent by channel and external id); the queue is read."""
    i = 0
    while not stop.is_set():
        externals = [f"m{n}-{i}-{k}" for k in range(BATCH)]
        i += 1
        now = datetime.now(UTC).isoformat()
        items = [{"channelId": channel, "kind": "COMMENT", "externalId": e, "author": f"@donneur{n}",
                  "text": f"Où donner mon sang ? ({e})", "receivedAt": now} for e in externals]
        answer = cm.call("ingestInteractions", INGEST, {"i": {"tenantId": tid, "items": items}})
        if answer is not None:
            payload = answer["ingestInteractions"]
            if payload["accepted"] + payload["duplicates"] != BATCH:
                cm.fail("ingestInteractions", f"{BATCH} comments sent, answered {payload}")
            with cm.tally.lock:
                work.ingested.extend(externals)
                work.duplicates += payload["duplicates"]
        cm.call("moderationQueue", QUEUE, {"id": tid})


# ------------------------------------------------------------------------------------------------ the processes


def lock_holders(database_url: str, procs: list[subprocess.Popen[bytes]]) -> Counter[int]:
    """How many advisory locks (projections, the dispatcher) each of these processes holds, by pid."""
    with psycopg.connect(database_url) as conn:
        ports: dict[int, int] = dict(conn.execute(
            "SELECT a.client_port, count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted GROUP BY 1").fetchall())
    held: Counter[int] = Counter()
    for proc in procs:
        if proc.poll() is None:
            for conn in psutil.Process(proc.pid).net_connections("tcp"):
                held[proc.pid] += ports.get(conn.laddr.port, 0)
    return +held  # those that hold some


def connected_to(port: int, procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes] | None:
    """The process with a connection open to this local port (a request in flight to the fake platform)."""
    for proc in procs:
        connections = psutil.Process(proc.pid).net_connections("tcp") if proc.poll() is None else []
        if any(c.raddr and c.raddr.port == port for c in connections):
            return proc
    return None


def publications(fake: FakeMastodon) -> int:
    """Requests to publish the fake platform has had (its counter, copied at once: its server thread writes it)."""
    return sum(dict(fake.requests).values())


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def tenant_posts(client: FrontEnd, tid: str) -> list[dict[str, Any]]:
    posts: list[dict[str, Any]] = []
    after = None
    while True:
        data = client.call("posts", POSTS, {"id": tid, "after": after})
        assert data is not None, client.tally.failures
        page = data["tenant"]["posts"]
        posts += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            assert len(posts) == page["totalCount"]
            return posts
        after = page["pageInfo"]["endCursor"]


def post_events(database_url: str, tenant_key: str) -> dict[str, Counter[str]]:
    """Each post of the tenant (raw id) -> how many events of each type the store holds for it."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT originator_id, substring(topic from '[^.]+$'), count(*) FROM public.parvis_events "
            "WHERE originator_id >= %s AND originator_id < %s GROUP BY 1, 2",
            (f"{tenant_key}/post/", f"{tenant_key}/post0")).fetchall()
    events: dict[str, Counter[str]] = {}
    for post, kind, n in rows:
        events.setdefault(post, Counter())[kind] = n
    return events


Seen = tuple[int, dict[str, int], dict[str, tuple[int, int]], Counter[str]]


def read_models(database_url: str, tenant_key: str) -> Seen:
    """The store's head, each read model's position, each comment's (rows, analysed), the jobs' states."""
    with psycopg.connect(database_url) as conn:
        head = conn.execute("SELECT max(notification_id) FROM public.parvis_events").fetchone()
        tracked: dict[str, int] = dict(conn.execute("SELECT projection, position FROM parvis.tracking").fetchall())
        rows = conn.execute("SELECT external_id, count(*), count(sentiment) FROM read.interactions "
                            "WHERE tenant_id = %s GROUP BY 1", (tenant_key,)).fetchall()
        jobs = conn.execute("SELECT actor || ':' || status, count(*) FROM parvis.jobs "
                            "WHERE actor IN ('publish_post', 'analyse_interaction') GROUP BY 1").fetchall()
    assert head is not None
    return head[0], tracked, {e: (n, analysed) for e, n, analysed in rows}, Counter(dict(jobs))


# ------------------------------------------------------------------------------------------------ the test


@dataclass
class Run:
    """What a run did, for its summary (printed in any case) and for the diagnosis of a failure."""

    tally: Tally = field(default_factory=Tally)
    work: Work = field(default_factory=Work)
    kills: list[str] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)
    load_began: float = 0.0
    load_seconds: float = 0.0
    balancer: Balancer | None = None
    outcome: str = ""

    def at(self, second: float) -> None:
        """Sleep until this second of the load."""
        time.sleep(max(0.0, self.load_began + second - time.monotonic()))

    def killed(self, proc: subprocess.Popen[bytes], what: str) -> None:
        kill(proc)
        self.kills.append(f"{what} at {time.monotonic() - self.load_began:.1f}s")

    def summary(self) -> str:
        tally = self.tally
        operations = ", ".join(f"{n} {op}" for op, n in sorted(tally.operations.items()))
        retries = ", ".join(f"{n} {reason}" for reason, n in tally.retries.most_common()) or "none"
        apis = ", ".join(f"{b.connections} to :{b.port}" for b in self.balancer.backends) if self.balancer else "-"
        return (f"scale-out: {sum(tally.operations.values())} operations in {self.load_seconds:.0f}s of load "
                f"({operations}); {tally.retried} calls retried, {sum(tally.retries.values())} retries ({retries}); "
                f"{len(tally.failures)} failures{f' {tally.failures[:3]}' if tally.failures else ''}; "
                f"{tally.late} answers not yet consistent; {self.work.duplicates} comments "
                f"answered as already there; connections through the balancer: {apis}; "
                f"kills: {'; '.join(self.kills) or 'none'}; {self.outcome}{time.monotonic() - self.began:.0f}s in all")


def test_two_processes_of_each_kind_lose_no_work_and_do_nothing_twice_when_one_of_each_is_killed_under_load(
    servers: tuple[str, str], tmp_path: Path, mastodon_server: tuple[FakeMastodon, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = Run()
    fake, _ = mastodon_server
    fake.reset()
    with fresh_database(servers[0]) as url:
        register_agency(url, servers[1], tmp_path, ADMIN)
        (tmp_path / "logs").mkdir()
        # Small pools: the suite's PostgreSQL serves other sessions too (this deployment holds about 40 connections).
        # A request is answered 503 after 8 s, which also bounds how long the key of a mutation whose process died
        # answers "still running" (api/commands.py).
        deployment = Processes(process_env(
            url, servers[1], PARVIS_QUEUE_NAMESPACE=f"parvis-scale-{uuid.uuid4().hex[:8]}",
            PARVIS_JOB_REDELIVER_SECONDS="3", PARVIS_WORKER_THREADS="2", PARVIS_DB_POOL_SIZE="2",
            PARVIS_REQUEST_TIMEOUT_SECONDS="8", PARVIS_POLL_SECONDS="600", PARVIS_METRICS_SECONDS="600",
            PARVIS_CHECKPOINT_SECONDS="0", PARVIS_REPORT_CHECK_SECONDS="0"), tmp_path / "logs")
        try:
            scenario(run, deployment, url, mastodon_server)
        except BaseException:
            print(run.summary())
            for log in sorted(deployment.logs.iterdir()):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
            raise
        finally:
            for client in run.tally.clients:
                client.close()
            deployment.stop()
    with capsys.disabled():
        print(f"\n{run.summary()}")


def scenario(run: Run, deployment: Processes, url: str, mastodon: tuple[FakeMastodon, str]) -> None:
    from api.ids import raw
    from parvis.wiring import read_model_names

    fake, mastodon_url = mastodon
    # Given two projectors (the first active, the other a standby), two workers and two APIs behind a balancer
    models = len(read_model_names())
    deployment.start("project")
    active = deployment.procs[-1]
    eventually(lambda: lock_holders(url, [active])[active.pid] == models, within=60)
    deployment.start("project")
    standby = deployment.procs[-1]
    deployment.start("work")
    deployment.start("work")
    workers = deployment.procs[-2:]
    ports = [free_port(), free_port()]
    for port in ports:
        deployment.start("serve", "--port", str(port))
    apis = dict(zip(ports, deployment.procs[-2:], strict=True))
    for port in ports:
        wait_http(f"http://127.0.0.1:{port}/readyz")
    assert list(lock_holders(url, [active, standby])) == [active.pid]
    with Balancer([("127.0.0.1", port) for port in ports]) as balancer:
        run.balancer = balancer
        graphql = f"http://127.0.0.1:{balancer.port}/graphql"
        tokens = {ADMIN: login(graphql, ADMIN)}
        setup = FrontEnd(graphql, tokens[ADMIN], Tally())
        run.tally.clients.append(setup)
        tid = _call(setup, CREATE, {"name": "Don du sang", "kind": "NGO", "timezone": "Europe/Paris"})[
            "createTenant"]["tenant"]["id"]
        _call(setup, POLICY, {"tenantId": tid, "internalApprovals": 1, "clientApproval": False})
        _call(setup, GRANT, {"email": CM, "role": "COMMUNITY_MANAGER", "tenantId": tid, "password": PASSWORD})
        channel = _call(setup, CONNECT, {"tenantId": tid, "platform": "MASTODON", "handle": "@parvis_demo",
                                         "credentials": {"base_url": mastodon_url,
                                                         "access_token": fake.access_token}})[
            "connectChannel"]["channel"]["id"]
        tokens[CM] = login(graphql, CM)
        cm = [FrontEnd(graphql, tokens[CM], run.tally) for _ in range(4)]
        admin = FrontEnd(graphql, tokens[ADMIN], run.tally)
        stop = threading.Event()
        threads = [threading.Thread(target=editorial, args=(cm[n], admin, tid, channel, n, run.work, stop))
                   for n in range(2)]
        threads += [threading.Thread(target=moderation, args=(cm[2 + n], tid, channel, n, run.work, stop))
                    for n in range(2)]
        run.load_began = time.monotonic()
        for thread in threads:
            thread.start()

        # When, under that load, the API with the most connections open through the balancer is killed,
        run.at(4)
        busiest = max(balancer.backends, key=lambda b: b.open)
        run.killed(apis[busiest.port], f"API :{busiest.port} ({busiest.open} connections open)")
        # then the active projector,
        run.at(9)
        run.killed(active, "active projector")
        # then the worker that holds a publication in flight (the platform holds its next request 8 s)
        run.at(14)
        platform_port = int(mastodon_url.rsplit(":", 1)[1])
        before = publications(fake)
        fake.faults.hang_next(8, endpoint="statuses")
        publishing = eventually(lambda: publications(fake) > before and connected_to(platform_port, workers),
                                within=20, every=0.05)
        run.killed(publishing, "worker publishing")
        run.at(19)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        run.load_seconds = time.monotonic() - run.load_began

        # Then the front ends saw no failure: every error was a cut connection, a 503 or a key still held by the
        # attempt that was cut, and a retry succeeded
        assert not any(t.is_alive() for t in threads)
        assert run.tally.failures == []
        assert set(run.tally.retries) <= {"RemoteProtocolError", "ReadError", "WriteError", "ConnectError",
                                          "HTTP 502", "HTTP 503", KEY_HELD}
        assert busiest.healthy is False
        survivor = next(p for p in workers if p is not publishing)
        assert [p.poll() for p in (standby, survivor, *(p for p in apis.values() if p.pid != apis[busiest.port].pid))] \
            == [None, None, None]

        # And every post a front end saw drafted is there once; every scheduled one is published exactly once
        reader = FrontEnd(graphql, tokens[ADMIN], Tally())
        run.tally.clients.append(reader)
        work = run.work
        published = eventually(lambda: (posts := tenant_posts(reader, tid)) and all(
            p["status"] == "PUBLISHED" for p in posts if p["id"] in work.scheduled) and posts, within=60)
        assert sorted(p["id"] for p in published) == sorted(work.drafted)
        externals = [p["variants"][0]["externalId"] for p in published if p["id"] in work.scheduled]
        time.sleep(4)  # a redelivery period: nothing is published twice afterwards
        assert fake.created == len(work.scheduled)
        assert sorted(externals) == sorted(dict(fake.statuses))
        assert max(dict(fake.requests).values()) >= 2, "the killed worker's publication was taken over with its key"

        # And each command was carried out once: every post went through its life once, event by event
        tenant_key = raw(tid, "Tenant")
        lives = post_events(url, tenant_key)
        assert sorted(lives) == sorted(raw(p, "Post") for p in work.drafted)
        assert [post for post in work.scheduled if lives[raw(post, "Post")] != LIFE] == []

        # And every comment a front end saw ingested is in the read model once, and was analysed
        count = reader.call("moderationQueue", QUEUE, {"id": tid})
        assert count is not None
        assert count["tenant"]["moderationQueue"]["totalCount"] == len(set(work.ingested))

        def caught_up() -> Any:
            head, tracked, comments, jobs = read_models(url, tenant_key)
            done = (all(position == head for position in tracked.values())
                    and set(comments) == set(work.ingested) and all(c == (1, 1) for c in comments.values())
                    and set(jobs) <= {"publish_post:done", "analyse_interaction:done"})
            return done and (head, jobs)

        # And the standby projector took over: every read model, and the job outbox, reached the store's head
        head, jobs = eventually(caught_up, within=60)
        assert lock_holders(url, [standby, survivor]) == {standby.pid: models, survivor.pid: 1}
        run.outcome = (f"{len(work.scheduled)} posts published once, {len(work.ingested)} comments analysed, "
                       f"event store head {head}, {sum(jobs.values())} jobs done; ")


def login(graphql: str, email: str) -> str:
    """An access token (waiting, bounded, for a just-granted user to reach the sign-in directory)."""
    def attempt() -> Any:
        body = httpx.post(graphql, json={"query": LOGIN, "variables": {"e": email, "p": PASSWORD}}).json()
        return (body.get("data") or {}).get("login")

    return eventually(attempt, within=20)["accessToken"]  # type: ignore[no-any-return]


def _call(client: FrontEnd, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    data = client.call("setup", query, {"i": variables})
    assert data is not None, client.tally.failures
    return data
