"""What operators see: JSON log lines with the job's tenant and trace, Prometheus metrics of the workers, and a
request's trace carried through its events to the jobs they cause."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.rows import dict_row

from tests.support import Client, free_port, parvis, process_env, stop

CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } } }"


@pytest.fixture(scope="module")
def observed(settings: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`parvis work` with its metrics served and its log (DEBUG) kept in a file."""
    port = free_port()
    log_file = Path(tmp_path_factory.mktemp("logs")) / "worker.log"
    env = process_env(settings.database_url, redis_url, PARVIS_QUEUE_NAMESPACE=f"parvis-obs-{uuid.uuid4().hex[:8]}",
                      PARVIS_WORKER_METRICS_PORT=str(port), PARVIS_LOG_LEVEL="DEBUG", PARVIS_LOG_FORMAT="json",
                      PARVIS_POLL_SECONDS="3600", PARVIS_METRICS_SECONDS="3600")
    with log_file.open("wb") as out:
        proc = parvis("work", env=env, stderr=out)
        try:
            yield {"metrics": f"http://127.0.0.1:{port}/metrics", "log": log_file}
        finally:
            stop([proc])


def test_a_requests_trace_reaches_its_events_and_jobs_and_the_workers_report_them(
    admin: Client, observed: dict[str, Any], settings: Any
) -> None:
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as db:
        _trace_through(admin, observed, db)


def _trace_through(admin: Client, observed: dict[str, Any], db: psycopg.Connection[Any]) -> None:
    trace_id = uuid.uuid4().hex
    headers = {"authorization": f"Bearer {admin.token}", "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}

    def call(query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = httpx.post(admin.url, json={"query": query, "variables": variables}, headers=headers, timeout=30).json()
        assert "errors" not in body, body
        return body["data"]  # type: ignore[no-any-return]

    tid = call(CREATE, {"i": {"name": f"Trace {trace_id[:4]}", "kind": "NGO", "timezone": "Europe/Paris"}})[
        "createTenant"]["tenant"]["id"]
    channel = call(CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": "@trace"}})[
        "connectChannel"]["channel"]["id"]
    from api import ids

    channel_id = ids.raw(channel, "Channel")

    # The event carries the request's trace context
    state = db.execute("SELECT state FROM public.parvis_events WHERE originator_id = %s", [channel_id]).fetchone()
    assert json.loads(bytes(state["state"]))["meta"]["traceparent"].startswith(f"00-{trace_id}-")
    # and so does the job the event caused, which the worker runs in the same trace
    job = f"check_channel:{channel_id}@1"
    deadline = time.monotonic() + 60
    query = "SELECT status, traceparent FROM parvis.jobs WHERE id = %s AND to_regclass('parvis.jobs') IS NOT NULL"
    while (row := _row(db, query, job)) is None or row["status"] != "done":
        assert time.monotonic() < deadline, f"job {job} not done: {row}"
        time.sleep(0.3)
    assert row["traceparent"].startswith(f"00-{trace_id}-")

    # The workers' metrics: the job's duration, the outbox's depth
    deadline = time.monotonic() + 20
    while 'parvis_job_seconds_count{actor="check_channel",outcome="ok"}' not in (
            text := httpx.get(observed["metrics"], timeout=5).text):
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.5)
    assert 'parvis_jobs{state="due"}' in text
    assert "parvis_publication_failures_total" in text

    # Every log line is one JSON object; the job's lines name its tenant and its trace
    lines = [json.loads(line) for line in observed["log"].read_text().splitlines() if line.strip()]
    assert all(line["service"] == "work" for line in lines)
    done = [line for line in lines if line.get("job") == job]
    assert done, lines[-5:]
    assert {line["tenant_id"] for line in done} == {channel_id.split("/")[0]}
    assert {line["trace_id"] for line in done} == {trace_id}


def _row(db: psycopg.Connection[Any], query: str, *args: Any) -> dict[str, Any] | None:
    """The row, or None while the dispatcher has not created the outbox yet."""
    try:
        return db.execute(query, list(args)).fetchone()  # type: ignore[no-any-return]
    except psycopg.errors.UndefinedTable:
        return None


def test_the_api_labels_its_latency_by_root_field_never_by_the_name_a_client_chose(
    server: str, admin: Client
) -> None:
    # Given operations under names of the clients' choosing (any number of them)
    names = [f"Probe{uuid.uuid4().hex}" for _ in range(20)]
    for name in names:
        assert admin.data(f"query {name} {{ me {{ email }} }}")["me"]["email"]
    admin.raw("query Broken { nosuchfield }")

    # When the API's metrics are read
    text = httpx.get(server.replace("/graphql", "/metrics"), timeout=10).text
    labels = {
        sample.labels["operation"]
        for family in text_string_to_metric_families(text)
        if family.name == "parvis_graphql_operation_seconds"
        for sample in family.samples
    }

    # Then the series are the schema's root fields (and "invalid"), so their number is bounded by the schema
    assert {"me", "invalid"} <= labels
    assert not any(name in text for name in names)
