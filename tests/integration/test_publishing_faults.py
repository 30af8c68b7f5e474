"""Publishing survives its failures: a worker killed mid-publication, a platform that refuses or is down."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from api import ids
from tests.fakes import serve
from tests.fakes.mastodon import FakeMastodon
from tests.support import Client, eventually, parvis, process_env

TOKEN = "mastodon-test-token"
CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
POLICY = "mutation($i: SetApprovalPolicyInput!) { setApprovalPolicy(input: $i) { userErrors { message } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } userErrors { message } } }"
DRAFT = "mutation($i: DraftPostInput!) { draftPost(input: $i) { post { id } userErrors { message } } }"
SUBMIT = "mutation($i: PostActionInput!) { submitPost(input: $i) { post { status } userErrors { message } } }"
SCHEDULE = "mutation($i: SchedulePostInput!) { schedulePost(input: $i) { post { status } userErrors { message } } }"
POST_HISTORY = "query($id: ID!) { node(id: $id) { ... on Post { history { type actor } } } }"
POST = "query($id: ID!) { node(id: $id) { ... on Post { status error variants { externalId externalUrl error } } } }"


@pytest.fixture(scope="module")
def mastodon() -> Iterator[tuple[FakeMastodon, str]]:
    fake = FakeMastodon(access_token=TOKEN)
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
def start_worker(settings: Any, redis_url: str) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start `parvis work` processes (jobs redelivered after 2 s); all stopped afterwards."""
    namespace = f"parvis-faults-{uuid.uuid4().hex[:8]}"
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = process_env(settings.database_url, redis_url, PARVIS_QUEUE_NAMESPACE=namespace,
                          PARVIS_JOB_REDELIVER_SECONDS="2", PARVIS_WORKER_THREADS="1")
        procs.append(parvis("work", env=env))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()



def scheduled_post(admin: Client, base_url: str, body: str) -> str:
    """A post on a Mastodon channel of a tenant that needs no approval, due in two seconds."""
    tid = admin.data(CREATE, {"i": {"name": f"Mastodon {uuid.uuid4().hex[:4]}", "kind": "NGO",
                                    "timezone": "Europe/Paris"}})["createTenant"]["tenant"]["id"]
    admin.data(POLICY, {"i": {"tenantId": tid, "internalApprovals": 0, "clientApproval": False}})
    channel = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "MASTODON", "handle": "@parvis_demo",
                                         "credentials": {"base_url": base_url, "access_token": TOKEN}}})
    channel_id = channel["connectChannel"]["channel"]["id"]
    post_id = admin.data(DRAFT, {"i": {"tenantId": tid, "variants": [{"channelId": channel_id, "body": body}]}})[
        "draftPost"]["post"]["id"]
    assert admin.data(SUBMIT, {"i": {"postId": post_id}})["submitPost"]["post"]["status"] == "APPROVED"
    at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    assert admin.data(SCHEDULE, {"i": {"postId": post_id, "at": at}})["schedulePost"]["post"]["status"] == "SCHEDULED"
    return post_id


def status_of(admin: Client, post_id: str) -> dict[str, Any]:
    return admin.data(POST, {"id": post_id})["node"]  # type: ignore[no-any-return]


def test_a_worker_killed_during_a_publication_is_replaced_and_the_post_goes_out_once(
    admin: Client, mastodon: tuple[FakeMastodon, str], start_worker: Callable[[], subprocess.Popen[bytes]]
) -> None:
    fake, url = mastodon
    fake.reset()
    # Given a due post whose first publication request the platform is slow to answer
    fake.faults.hang_next(8, endpoint="statuses")
    post_id = scheduled_post(admin, url, "Journée mondiale sans tabac : on en parle ?")

    # When the worker is killed while it waits for the platform
    first = start_worker()
    eventually(lambda: sum(fake.requests.values()))
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert status_of(admin, post_id)["status"] == "PUBLISHING"

    # Then a new worker takes the job over, and the platform made exactly one status
    start_worker()
    published = eventually(lambda: (s := status_of(admin, post_id))["status"] == "PUBLISHED" and s)
    assert fake.created == 1
    ((_key, calls),) = fake.requests.items()
    assert calls == 2  # the first request (which the platform completed) and the retry with the same key
    (status_id,) = fake.statuses
    assert published["variants"][0]["externalId"] == status_id
    assert published["variants"][0]["externalUrl"].endswith(f"/@parvis_demo/{status_id}")


def test_refused_content_fails_the_post_with_a_typed_error_and_a_rate_limit_is_retried(
    admin: Client, mastodon: tuple[FakeMastodon, str], start_worker: Callable[[], subprocess.Popen[bytes]]
) -> None:
    fake, url = mastodon
    fake.reset()
    start_worker()
    # A rate limit (twice) is waited out and retried; the post goes out once
    fake.faults.fail_next(429, times=2, endpoint="statuses", reset_in=1)
    retried = scheduled_post(admin, url, "Merci à nos bénévoles !")
    assert eventually(lambda: status_of(admin, retried)["status"] == "PUBLISHED")
    assert fake.created == 1

    # Content the platform refuses is a permanent failure, visible in the API
    fake.faults.fail_next(422, endpoint="statuses", error="Validation failed: Text contains a forbidden link")
    refused = scheduled_post(admin, url, "Un lien douteux")
    failed = eventually(lambda: (s := status_of(admin, refused))["status"] == "FAILED" and s)
    assert failed["error"].startswith("rejected_content: ")
    assert "forbidden link" in failed["variants"][0]["error"]
    assert fake.created == 1


async def test_a_pending_approval_lapses_through_its_job(
    admin: Client, conn: asyncpg.Connection, start_worker: Callable[[], subprocess.Popen[bytes]]
) -> None:
    # Given a tenant whose approvals expire after 4 hours, and a post waiting for one
    tid = admin.data(CREATE, {"i": {"name": "Expiry", "kind": "NGO", "timezone": "Europe/Paris"}})[
        "createTenant"]["tenant"]["id"]
    admin.data(POLICY, {"i": {"tenantId": tid, "internalApprovals": 1, "clientApproval": False,
                              "expiresAfterHours": 4}})
    channel = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": "@exp"}})
    post_id = admin.data(DRAFT, {"i": {"tenantId": tid, "variants": [
        {"channelId": channel["connectChannel"]["channel"]["id"], "body": "En attente"}]}})["draftPost"]["post"]["id"]
    submitted = admin.data(SUBMIT, {"i": {"postId": post_id}})["submitPost"]["post"]
    assert submitted["status"] == "IN_REVIEW"
    start_worker()

    # Then the dispatcher derived a job due four hours after the submission
    raw = ids.raw(post_id, "Post")
    job = await eventually_async(lambda: conn.fetchrow(
        "SELECT id, due_at, created_at, status FROM parvis.jobs WHERE id = $1", f"expire_approval:{raw}#1"))
    assert job["due_at"] - job["created_at"] == timedelta(hours=4)
    assert job["status"] == "pending"

    # When that time comes (moved forward here), the worker sends the post back to DRAFT
    await conn.execute("UPDATE parvis.jobs SET due_at = now() WHERE id = $1", job["id"])
    assert await asyncio.to_thread(eventually, lambda: status_of(admin, post_id)["status"] == "DRAFT")
    history = admin.data(POST_HISTORY, {"id": post_id})["node"]["history"]
    assert [h["type"] for h in history][-1] == "ApprovalExpired"
    assert history[-1]["actor"] == "system"


async def eventually_async(fetch: Callable[[], Any], within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while (value := await fetch()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing within {within}s")
        await asyncio.sleep(0.1)
    return value
