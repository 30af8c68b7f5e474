"""What the workers tell operators (Prometheus): job durations, the outbox's depth, publication failures."""

from __future__ import annotations

from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

tracer = trace.get_tracer("parvis.workers")

JOB_SECONDS = Histogram(
    "parvis_job_seconds", "Duration of one job run", ["actor", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
JOBS = Gauge("parvis_jobs", "Jobs of the outbox not done yet: due now (the queue's depth) or later", ["state"])
FAILED_JOBS = Gauge("parvis_jobs_failed", "Jobs given up after their last attempt")
PUBLICATION_FAILURES = Counter(
    "parvis_publication_failures_total", "Failed attempts to publish a post's variant", ["kind", "final"]
)

DEPTH_SQL = """
SELECT count(*) FILTER (WHERE status = 'pending' AND due_at <= now()) AS due,
       count(*) FILTER (WHERE status = 'pending' AND due_at > now()) AS later,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM parvis.jobs WHERE status IN ('pending', 'failed')
"""


def record_depth(row: dict[str, int]) -> None:
    JOBS.labels("due").set(row["due"])
    JOBS.labels("later").set(row["later"])
    FAILED_JOBS.set(row["failed"])
