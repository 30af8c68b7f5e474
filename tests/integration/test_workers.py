"""The worker process: jobs derived from events, run through Redis, re-derived when Redis loses them."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Client, eventually, parvis, process_env

CONNECT = (
    "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id health } userErrors { code } } }"
)
CHANNELS = "query($id: ID!) { tenant(id: $id) { channels { id handle health } } }"
CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"



def health(admin: Client, tenant_id: str, handle: str) -> str:
    channels = admin.data(CHANNELS, {"id": tenant_id})["tenant"]["channels"]
    return next(c["health"] for c in channels if c["handle"] == handle)


@pytest.fixture
def worker_on(settings: Any) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start `parvis work` against a given Redis; stopped with SIGTERM afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(redis_url: str) -> subprocess.Popen[bytes]:
        env = process_env(
            settings.database_url,
            redis_url,
            PARVIS_QUEUE_NAMESPACE=f"parvis-test-{uuid.uuid4().hex[:8]}",
            PARVIS_JOB_REDELIVER_SECONDS="2",
            PARVIS_POLL_SECONDS="1",
        )
        proc = parvis("work", env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            assert proc.wait(timeout=20) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def test_a_new_channel_is_checked_by_a_worker(admin: Client, redis_url: str, worker_on: Any) -> None:
    worker_on(redis_url)
    tenant = admin.data(CREATE, {"i": {"name": "Checked", "kind": "NGO", "timezone": "Europe/Paris"}})
    tid = tenant["createTenant"]["tenant"]["id"]
    for handle, creds in (("@ok", {"token": "t"}), ("@revoked", {"revoked": True})):
        data = admin.data(
            CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": handle, "credentials": creds}}
        )
        assert data["connectChannel"]["userErrors"] == []
    assert eventually(lambda: health(admin, tid, "@ok") == "OK")
    assert eventually(lambda: health(admin, tid, "@revoked") == "REVOKED")
    # Polls of the revoked channel fail every second from now on; its health stays the check's verdict.
    time.sleep(3)
    assert health(admin, tid, "@revoked") == "REVOKED"


def test_with_redis_stopped_the_api_answers_and_the_check_runs_once_redis_is_back(
    admin: Client, worker_on: Any, tmp_path: Path
) -> None:
    from parvis.embedded import start_redis

    redis = start_redis(tmp_path / "redis")
    port = redis.url.rsplit(":", 1)[1].split("/")[0]
    worker_on(redis.url)
    time.sleep(1)
    redis.stop()
    tenant = admin.data(CREATE, {"i": {"name": "Storm", "kind": "NGO", "timezone": "Europe/Paris"}})
    tid = tenant["createTenant"]["tenant"]["id"]
    data = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": "@storm", "credentials": {}}})
    assert data["connectChannel"]["userErrors"] == []
    time.sleep(3)
    assert health(admin, tid, "@storm") == "UNKNOWN"
    again = start_redis(tmp_path / "redis", port=int(port))
    try:
        assert eventually(lambda: health(admin, tid, "@storm") == "OK", within=45)
    finally:
        again.stop()
