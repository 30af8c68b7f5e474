"""Faults of the services under the product: PostgreSQL restarted under load, Redis flushed and restarted.

Each test runs its own PostgreSQL or Redis (embedded, in a temporary directory): the shared servers are never
restarted nor flushed."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psycopg
import pytest
import redis

from api.unavailable import UNAVAILABLE_MESSAGE
from tests.fakes import serve
from tests.fakes.mastodon import FakeMastodon
from tests.support import (
    PASSWORD,
    Client,
    Processes,
    eventually,
    free_port,
    process_env,
    register_agency,
)

pytestmark = pytest.mark.slow

CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
APPROVALS = "mutation($i: SetApprovalPolicyInput!) { setApprovalPolicy(input: $i) { userErrors { message } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } userErrors { message } } }"
INGEST = """mutation($i: IngestInteractionsInput!) { ingestInteractions(input: $i) {
  accepted duplicates consistent userErrors { message } } }"""
DRAFT = "mutation($i: DraftPostInput!) { draftPost(input: $i) { post { id } userErrors { message } } }"
SUBMIT = "mutation($i: PostActionInput!) { submitPost(input: $i) { post { status } userErrors { message } } }"
SCHEDULE = "mutation($i: SchedulePostInput!) { schedulePost(input: $i) { post { status } userErrors { message } } }"
POST = "query($id: ID!) { node(id: $id) { ... on Post { status variants { externalId } } } }"
BATCH = 5  # interactions per ingestion call: one atomic save of five aggregates
TOKEN = "mastodon-faults-token"



@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., Processes]]:
    made: list[Processes] = []

    def make(database_url: str, redis_url: str, **extra: str) -> Processes:
        logs = tmp_path / f"logs{len(made)}"
        logs.mkdir()
        made.append(Processes(process_env(database_url, redis_url, PARVIS_JOB_REDELIVER_SECONDS="3",
                                          PARVIS_QUEUE_NAMESPACE=f"parvis-faults-{uuid.uuid4().hex[:8]}",
                                          **extra), logs))
        return made[-1]

    yield make
    for deployment in made:
        deployment.stop()


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A data directory for a PostgreSQL of the test's own, outside pytest's temporary root: PostgreSQL runs as
    another user (when the tests run as root), and every pytest session that starts takes the others' access
    to that root away (it makes `pytest-of-<user>` 0700), which would pull the data directory from under it."""
    path = Path(tempfile.mkdtemp(prefix="parvis-faults-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------------- PostgreSQL


@dataclass
class Call:
    """One ingestion call of the load: its batch number, and what came back."""

    batch: int
    status: int | None = None
    body: dict[str, Any] | None = None
    error: str | None = None
    at: float = 0.0

    @property
    def acknowledged(self) -> bool:
        data = (self.body or {}).get("data") or {}
        payload = data.get("ingestInteractions") or {}
        return self.status == 200 and not (self.body or {}).get("errors") and payload.get("userErrors") == []


def items(channel_id: str, batch: int) -> list[dict[str, Any]]:
    return [{"channelId": channel_id, "kind": "COMMENT", "externalId": f"b{batch}-{k}", "author": f"@fan{batch}",
             "text": f"Message {k} du lot {batch}", "receivedAt": datetime.now(UTC).isoformat()}
            for k in range(BATCH)]


def load(admin: Client, tid: str, channel_id: str, calls: list[Call], stop: threading.Event, first: int) -> None:
    """Ingestion calls one after the other, each with new interactions, until told to stop."""
    http = httpx.Client(timeout=30)
    client = Client(admin.url, admin.token, http)
    batch = first
    try:
        while not stop.is_set():
            call = Call(batch)
            try:
                response = client.raw(INGEST, {"i": {"tenantId": tid, "items": items(channel_id, batch)}})
                call.status = response.status_code
                call.body = response.json() if "json" in response.headers.get("content-type", "") else None
            except httpx.HTTPError as exc:
                call.error = f"{type(exc).__name__}: {exc}"
            call.at = time.monotonic()
            calls.append(call)
            batch += 1
            if call.error or not call.acknowledged:
                time.sleep(0.2)
    finally:
        http.close()


def _unavailable(body: dict[str, Any]) -> bool:
    errors = body.get("errors") or []
    return bool(errors) and all(e.get("message") == UNAVAILABLE_MESSAGE and e.get("extensions", {}).get("retryAfter")
                                and e["extensions"].get("code") == "INTERNAL" for e in errors)


def _retry_later(status: int | None, body: dict[str, Any] | None) -> bool:
    """An answer that says "the database is unavailable, retry" (503 before the operation ran, a GraphQL error in
    it), or the request-time limit's 503 (PARVIS_REQUEST_TIMEOUT_SECONDS) for a call that waited the outage out."""
    if body is None or status not in (200, 503):
        return False
    timed_out = [e.get("message") for e in body.get("errors") or []] == ["the request took too long"]
    return _unavailable(body) or (status == 503 and timed_out)


def stored_batches(database_url: str, tenant_key: str) -> dict[str, int]:
    """External id of every interaction in the event store -> how many aggregates carry it."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT convert_from(state, 'UTF8')::jsonb ->> 'external_id', count(*) FROM public.parvis_events "
            "WHERE originator_id >= %s AND originator_id < %s AND originator_version = 1 GROUP BY 1",
            (f"{tenant_key}/interaction/", f"{tenant_key}/interaction0")).fetchall()
    return dict(rows)


def projected(database_url: str, tenant_key: str) -> dict[str, tuple[int, int]]:
    """External id -> (rows in the read model, of which analysed by the worker)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT external_id, count(*), count(sentiment) FROM read.interactions WHERE tenant_id = %s GROUP BY 1",
            (tenant_key,)).fetchall()
    return {external: (n, analysed) for external, n, analysed in rows}


def test_postgresql_restarted_under_load_answers_cleanly_recovers_alone_and_loses_or_halves_nothing(
    tmp_path: Path, pg_dir: Path, redis_url: str, processes: Callable[..., Processes]
) -> None:
    from api import ids
    from parvis.embedded import start_postgres

    # Given a deployment (API, projector, worker) on a PostgreSQL of its own, under a steady ingestion load
    port = free_port()
    pg = start_postgres(pg_dir, port=port)
    try:
        register_agency(pg.url, redis_url, tmp_path, "admin@pannes.test")
        deployment = processes(pg.url, redis_url, PARVIS_REQUEST_TIMEOUT_SECONDS="8", PARVIS_DB_POOL_SIZE="4")
        deployment.start("project")
        deployment.start("work")
        api = deployment.api()
        admin = api.login("admin@pannes.test")
        tid = admin.data(CREATE, {"i": {"name": "Crues", "kind": "NGO", "timezone": "Europe/Paris"}})[
            "createTenant"]["tenant"]["id"]
        channel_id = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": "@crues"}})[
            "connectChannel"]["channel"]["id"]
        tenant_key = ids.raw(tid, "Tenant")
        calls: list[Call] = []
        stop = threading.Event()
        loaders = [threading.Thread(target=load, args=(admin, tid, channel_id, calls, stop, n * 100_000), daemon=True)
                   for n in range(2)]
        for loader in loaders:
            loader.start()
        eventually(lambda: sum(c.acknowledged for c in calls) >= 5)

        # When PostgreSQL stops (fast shutdown: sessions cut mid-transaction) and starts again
        stopped = time.monotonic()
        pg.stop()
        time.sleep(2)
        pg = start_postgres(pg_dir, port=port)
        restarted = time.monotonic()

        # Then the processes recover alone: calls are acknowledged again, without a restart of any process
        eventually(lambda: sum(c.acknowledged and c.at > restarted for c in calls) >= 5, within=60)
        stop.set()
        for loader in loaders:
            loader.join(timeout=40)
        assert deployment.alive() == [None, None, None]
        during = [c for c in calls if not c.acknowledged]
        assert during, "some calls met the outage"
        assert all(c.at > stopped for c in during), [(c, stopped) for c in during if c.at <= stopped]
        # And every failure was a clean answer that says to retry: a 503 with Retry-After before the operation ran,
        # or a GraphQL error in it (never a 500, a hang or a traceback)
        answers = [(c.status, c.error, c.body) for c in during]
        assert all(error is None for _, error, _ in answers), answers
        assert all(_retry_later(status, body) for status, _, body in answers), answers

        # And nothing is lost, halved or doubled: a batch is all in the event store or not at all; the
        # acknowledged ones are, and a failed one sent again (same external ids) completes it exactly once
        stored = stored_batches(pg.url, tenant_key)
        assert set(stored.values()) == {1}
        for call in calls:
            present = sum(f"b{call.batch}-{k}" in stored for k in range(BATCH))
            assert present in (0, BATCH), call
            if call.acknowledged:
                assert present == BATCH, call
        for call in during:
            again = admin.data(INGEST, {"i": {"tenantId": tid, "items": items(channel_id, call.batch)}})
            assert again["ingestInteractions"]["userErrors"] == []
            assert again["ingestInteractions"]["accepted"] + again["ingestInteractions"]["duplicates"] == BATCH
            # read-your-writes works again: every read model follows (none was left behind by the outage)
            assert again["ingestInteractions"]["consistent"], again
        stored = stored_batches(pg.url, tenant_key)
        assert len(stored) == BATCH * len(calls)
        assert set(stored.values()) == {1}
        # And the read model and the worker caught up: every interaction projected once and analysed
        assert eventually(lambda: (p := projected(pg.url, tenant_key)) and len(p) == len(stored)
                          and all(a == (1, 1) for a in p.values()), within=60)
    finally:
        pg.stop()


async def test_every_projection_survives_postgresql_restarts_under_a_stream_of_events(
    tmp_path: Path, pg_dir: Path
) -> None:
    from domain.tenant import Tenant
    from parvis import wiring
    from parvis.embedded import start_postgres
    from projections.runner import Runner
    from tests.conftest import make_settings, migrated

    # Given the projection runner following a store that receives events all the time
    port = free_port()
    pg = start_postgres(pg_dir, port=port)
    settings = make_settings(pg.url, "redis://127.0.0.1:1/0", tmp_path)
    await migrated(settings)
    domain = wiring.domain(settings)
    stop = threading.Event()

    def produce() -> None:
        agency = domain.register_agency("Flux", "flux@pannes.test", PASSWORD).value[0]
        while not stop.is_set():
            tenant = Tenant(tenant_key=uuid.uuid4().hex, agency_key=agency, name="Flux", kind="NGO",
                            timezone="Europe/Paris", locale="fr-FR")
            for n in range(5):
                tenant.rename(f"Flux {n}")
            try:
                domain.commit(tenant)
            except Exception:  # the store is down for a moment: the producer waits
                time.sleep(0.2)

    producer = threading.Thread(target=produce, daemon=True)
    runner = Runner(pg.url, wiring.projections(settings), poll_seconds=0.2)
    task = asyncio.create_task(runner.run())
    producer.start()
    try:
        for _ in range(3):
            await asyncio.sleep(2)
            # When PostgreSQL stops and starts again (connections cut in the middle of batches)
            await asyncio.to_thread(pg.stop)
            await asyncio.sleep(1)
            pg = await asyncio.to_thread(start_postgres, pg_dir, port=port)
        stop.set()
        await asyncio.to_thread(producer.join, 10)

        # Then every projection (none silently ended) catches up with the store
        async def caught_up() -> bool:
            conn = await asyncpg.connect(pg.url)
            try:
                head = await conn.fetchval("SELECT max(notification_id) FROM public.parvis_events")
                rows = await conn.fetch("SELECT projection, position FROM parvis.tracking")
            finally:
                await conn.close()
            return len(rows) == len(runner.projections) and all(r["position"] == head for r in rows)

        deadline = time.monotonic() + 60
        while not await caught_up():
            assert time.monotonic() < deadline, "a projection stopped following the store"
            await asyncio.sleep(0.5)
        assert not task.done()
    finally:
        stop.set()
        runner.stop()
        await task
        domain.close()
        pg.stop()


# ------------------------------------------------------------------------------------------------ Redis


def test_redis_flushed_and_restarted_loses_no_job_and_publishes_each_post_once(
    settings: Any, admin: Client, tmp_path: Path, processes: Callable[..., Processes]
) -> None:
    from parvis.embedded import start_redis

    fake = FakeMastodon(access_token=TOKEN)
    port = free_port()
    own = start_redis(tmp_path / "redis", port=port)
    with serve(fake.app) as mastodon_url:
        try:
            # Given posts due now on a platform whose first publication is slow, and a single worker thread:
            # the other publications wait in Redis
            tid = admin.data(CREATE, {"i": {"name": "Flush", "kind": "NGO", "timezone": "Europe/Paris"}})[
                "createTenant"]["tenant"]["id"]
            admin.data(APPROVALS, {"i": {"tenantId": tid, "internalApprovals": 0, "clientApproval": False}})
            channel_id = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "MASTODON", "handle": "@flush",
                                                    "credentials": {"base_url": mastodon_url,
                                                                    "access_token": TOKEN}}})[
                "connectChannel"]["channel"]["id"]
            fake.faults.hang_next(6, endpoint="statuses")
            at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
            posts = []
            for n in range(4):
                post_id = admin.data(DRAFT, {"i": {"tenantId": tid, "variants": [
                    {"channelId": channel_id, "body": f"Alerte crue n°{n}"}]}})["draftPost"]["post"]["id"]
                assert admin.data(SUBMIT, {"i": {"postId": post_id}})["submitPost"]["post"]["status"] == "APPROVED"
                scheduled = admin.data(SCHEDULE, {"i": {"postId": post_id, "at": at}})["schedulePost"]
                assert scheduled["userErrors"] == []
                posts.append(post_id)
            deployment = processes(settings.database_url, own.url, PARVIS_WORKER_THREADS="1", PARVIS_POLL_SECONDS="600",
                                   PARVIS_METRICS_SECONDS="600")
            deployment.start("work")
            client = redis.Redis.from_url(own.url)
            queue = f"{deployment.env['PARVIS_QUEUE_NAMESPACE']}:parvis"
            eventually(lambda: sum(fake.requests.values()) >= 1 and client.llen(queue) >= 1)
            waiting = client.llen(queue)

            # When Redis loses everything (FLUSHALL, then a restart) while one publication is under way
            client.flushall()
            client.close()
            own.stop()
            time.sleep(1)
            own = start_redis(tmp_path / "redis", port=port)
            assert redis.Redis.from_url(own.url).dbsize() == 0

            # Then every post is published, once: the jobs come back from the outbox in PostgreSQL
            def status(post_id: str) -> dict[str, Any]:
                return admin.data(POST, {"id": post_id})["node"]  # type: ignore[no-any-return]

            published = eventually(lambda: all(status(p)["status"] == "PUBLISHED" for p in posts)
                                   and [status(p) for p in posts], within=60)
            time.sleep(4)  # a redelivery period: nothing is published twice afterwards
            assert waiting >= 1
            assert fake.created == len(posts)
            assert sorted(p["variants"][0]["externalId"] for p in published) == sorted(fake.statuses)
            assert deployment.alive() == [None]
        finally:
            own.stop()
