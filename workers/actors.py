"""Thin, idempotent actors: they take ids, load what they need, and record the outcome as events."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage
from opentelemetry import propagate, trace

from domain.app import Parvis
from domain.errors import Conflict
from domain.inbox import MAX_BATCH, Incoming
from domain.metrics import Observation
from domain.post import PostStatus
from domain.reports import ReportStatus
from projections.figures import Reader
from workers import telemetry
from workers.broker import QUEUE
from workers.connectors.base import ChannelRef, ConnectorError, FailureKind, Health, Published, VariantRef
from workers.reports import collect, render
from workers.spikes import figures_query, judge

log = logging.getLogger("parvis.workers")


class Opener(Protocol):
    def open(self, sealed: str) -> str: ...


class TextAnalyzer(Protocol):
    def analyze(self, text: str) -> Any: ...


@dataclass
class WorkerDeps:
    """What the actors need, built by the composition root."""

    domain: Parvis
    secrets: Opener
    connectors: Mapping[str, Any]
    analyzer: TextAnalyzer
    query: Callable[[str, dict[str, Any]], list[dict[str, Any]]]
    # Runs an async reading function on a connection of the read models (figures shared with the API).
    read: Callable[[Callable[[Reader], Awaitable[Any]]], Any] | None = None
    poll_interval: float = 60.0
    metrics_interval: float = 900.0


def check_channel(deps: WorkerDeps, channel_id: str, check_id: str) -> None:
    """Check a channel's credentials through its connector and record the health (once per check)."""
    channel = deps.domain.channel(channel_id)
    if check_id in channel.checks_done or not channel.connected:
        return
    connector = deps.connectors.get(channel.connector)
    if connector is None:
        deps.domain.record_channel_health(
            channel_id, Health.UNKNOWN.value, f"no '{channel.connector}' connector in this version", check_id
        )
        return
    credentials = json.loads(deps.secrets.open(channel.credentials)) if channel.credentials else {}
    ref = ChannelRef(channel_id, channel.platform, channel.handle, credentials)
    try:
        result = connector.check(ref)
    except ConnectorError as exc:
        if exc.transient:
            raise  # dramatiq retries with backoff
        deps.domain.record_channel_health(channel_id, Health.UNKNOWN.value, f"{exc.kind.value}: {exc}", check_id)
        return
    deps.domain.record_channel_health(channel_id, result.health.value, result.detail, check_id)


# A transient failure (network, rate limit) is retried this many times before the post is marked FAILED.
PUBLISH_RETRIES = 5
# A job delivered a little before its time (clocks of two machines) still publishes.
_EARLY = timedelta(seconds=5)


def publish_key(post_id: str, channel_id: str) -> str:
    """The idempotency key of one post on one channel: the same on every retry, so a platform posts it once."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"parvis:publish:{post_id}:{channel_id}").hex


def publish_post(deps: WorkerDeps, post_id: str) -> None:
    """Publish a due post on each of its channels, once; a redelivered job continues where the last one stopped."""
    domain = deps.domain
    post = domain.post(post_id)
    if post.status == PostStatus.SCHEDULED.value:
        if post.scheduled_at is None or post.scheduled_at > domain.now() + _EARLY:
            return  # rescheduled later: the job of the new time publishes it
        if domain.start_publishing(post_id).value != PostStatus.PUBLISHING.value:
            return  # held: the tenant went into crisis mode
        post = domain.post(post_id)
    elif post.status != PostStatus.PUBLISHING.value:
        return  # published, failed, held or cancelled in the meantime
    for variant in post.variants:
        channel_id = variant["channel_id"]
        if channel_id in post.published:
            continue
        try:
            done = _publish_variant(deps, post_id, channel_id, variant)
        except ConnectorError as exc:
            final = not (exc.transient and _retries() < PUBLISH_RETRIES)
            telemetry.PUBLICATION_FAILURES.labels(exc.kind.value, "yes" if final else "no").inc()
            if not final:
                delay = int(exc.retry_after * 1000) if exc.retry_after else None
                raise dramatiq.Retry(exc.message, delay=delay) from None
            domain.record_publish_failure(post_id, channel_id, exc.kind.value, exc.message)
            return
        domain.record_variant_published(post_id, channel_id, done.external_id, done.external_url, done.published_at)


def _publish_variant(deps: WorkerDeps, post_id: str, channel_id: str, variant: dict[str, Any]) -> Published:
    body = VariantRef(variant["body"], tuple(variant.get("media_urls") or ()))
    return _through_connector(deps, deps.domain.channel(channel_id), body, publish_key(post_id, channel_id))


def _through_connector(deps: WorkerDeps, channel: Any, body: VariantRef, key: str) -> Published:
    """Publish through the channel's connector (a post's variant, or a reply)."""
    if not channel.connected:
        raise ConnectorError(FailureKind.AUTH_EXPIRED, "the channel was disconnected")
    connector = deps.connectors.get(channel.connector)
    if connector is None:
        raise ConnectorError(FailureKind.UNKNOWN, f"no '{channel.connector}' connector in this version")
    credentials = json.loads(deps.secrets.open(channel.credentials)) if channel.credentials else {}
    ref = ChannelRef(channel.id, channel.platform, channel.handle, credentials)
    result: Published = connector.publish(ref, body, key)
    return result


@contextmanager
def job_context(actor: str) -> Iterator[None]:
    """Log lines of a job carry its id, its tenant and its correlation (structlog context variables)."""
    message = CurrentMessage.get_current_message()
    options = message.options if message is not None else {}
    parent = options.get("parvis_traceparent")
    context = propagate.extract({"traceparent": parent}) if parent else None
    with telemetry.tracer.start_as_current_span(f"job {actor}", context=context, kind=trace.SpanKind.CONSUMER,
                                                 attributes={"parvis.job": str(options.get("parvis_job"))}) as span:
        trace_id = span.get_span_context().trace_id
        with structlog.contextvars.bound_contextvars(
            job=options.get("parvis_job"), tenant_id=options.get("parvis_tenant"), actor_name=actor,
            trace_id=format(trace_id, "032x") if trace_id else None,
        ):
            started = time.perf_counter()
            yield
            log.debug("job %s done in %.3f s", actor, time.perf_counter() - started)


def _retries() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message is not None else 0


def expire_approval(deps: WorkerDeps, post_id: str, submission: int) -> None:
    """A pending approval of that submission lapses (nothing happens if the post moved on)."""
    deps.domain.expire_approval(post_id, submission)


def analyse_interaction(deps: WorkerDeps, interaction_id: str) -> None:
    """Language, sentiment and spam score of an interaction; the rules that waited for them apply then."""
    domain = deps.domain
    interaction = domain.interaction(interaction_id)
    if interaction.sentiment is not None or interaction.erased:
        return
    (text,) = domain.personal.open(interaction.tenant_key, [(interaction.author_ref, interaction.text)])
    if text is None:
        return  # erased meanwhile: nothing left to analyse
    result = deps.analyzer.analyze(text)
    domain.record_analysis(interaction_id, result.language, result.sentiment, result.spam_score)


def check_response_target(deps: WorkerDeps, interaction_id: str) -> None:
    """At the due time: a breach is recorded if the interaction is still unanswered."""
    deps.domain.record_breach(interaction_id)


def send_reply(deps: WorkerDeps, interaction_id: str, decision_version: int) -> None:
    """Send the reply decided at `decision_version` through the channel's connector, once."""
    domain = deps.domain
    if decision_version in domain.interaction(interaction_id).replies:
        return
    decided = domain.interaction_at(interaction_id, decision_version)
    reply = decided.decisions[-1]["reply_text"]
    channel = domain.channel(decided.channel_id)
    body = VariantRef(reply, (), in_reply_to=decided.external_id)
    try:
        done = _through_connector(deps, channel, body, publish_key(interaction_id, f"reply@{decision_version}"))
    except ConnectorError as exc:
        if exc.transient and _retries() < PUBLISH_RETRIES:
            raise dramatiq.Retry(exc.message, delay=int(exc.retry_after * 1000) if exc.retry_after else None) from None
        domain.record_reply(interaction_id, decision_version, None, None, f"{exc.kind.value}: {exc.message}")
        return
    domain.record_reply(interaction_id, decision_version, done.external_id, done.external_url, None)


_CHECKED = """
UPDATE parvis.jobs SET status = 'done', done_at = now() WHERE id = %(id)s AND status = 'pending' RETURNING id
"""


def detect_spike(deps: WorkerDeps, tenant_key: str, window_end: str) -> None:
    """Compare the tenant's last window with its baseline; a spike becomes a crisis suggestion (once).

    A quiet window records no event, so no outcome tells the dispatcher the check is over: the job marks itself
    done (else the pump hands it over again every PARVIS_JOB_REDELIVER_SECONDS until it is given up as failed).
    Done after the suggestion, a check that dies in between runs again, and the suggestion is made once anyway."""
    end = datetime.fromisoformat(window_end)
    spike = judge(deps.query(*figures_query(tenant_key, end))[0])
    if spike is not None:
        deps.domain.suggest_crisis(tenant_key, spike.reason, spike.figures, window_end)
    deps.query(_CHECKED, {"id": f"detect_spike:{tenant_key}@{window_end}"})


_PUBLISHED_ON = """
SELECT p.id AS post_id, v->>'external_id' AS external_id, (v->>'published_at')::timestamptz AS published_at
FROM read.posts p, jsonb_array_elements(p.variants) v
WHERE p.tenant_id = %(tenant)s AND v->>'channel_id' = %(channel)s AND v->>'external_id' IS NOT NULL
"""


_NEXT_POLL = """
UPDATE parvis.jobs SET args = %(args)s::jsonb, due_at = now() + make_interval(secs => %(seconds)s),
  status = 'pending', enqueued_at = NULL, attempts = 0
WHERE id = %(id)s AND status = 'pending' RETURNING id
"""


def poll_channel(deps: WorkerDeps, channel_id: str, cursor: str | None) -> None:
    """Fetch what is new on the platform since `cursor`, ingest it, and set the next poll (a recurring job).

    The cursor lives in the job, not in events: a quiet channel adds nothing to the tenant's history, and a
    worker that dies after ingesting re-fetches items that are then counted as duplicates, never stored twice."""
    domain = deps.domain
    channel = domain.channel(channel_id)
    if not channel.connected:
        return
    connector = deps.connectors.get(channel.connector)
    fetch = getattr(connector, "fetch_interactions", None)
    if fetch is None:
        return  # this connector cannot fetch: the job stays as it is, never due again before it is moved
    ours = deps.query(_PUBLISHED_ON, {"tenant": channel.tenant_key, "channel": channel_id})
    credentials = json.loads(deps.secrets.open(channel.credentials)) if channel.credentials else {}
    ref = ChannelRef(channel.id, channel.platform, channel.handle, credentials)
    next_in = deps.poll_interval
    try:
        page = fetch(ref, cursor, [(r["external_id"], r["published_at"]) for r in ours])
    except ConnectorError as exc:
        if exc.transient and _retries() < PUBLISH_RETRIES:
            raise dramatiq.Retry(exc.message, delay=int(exc.retry_after * 1000) if exc.retry_after else None) from None
        # The channel's health is the credentials check's to record (it tells expired from revoked): a poll
        # that fails only waits longer before the next one.
        log.warning("poll of channel %s failed: %s: %s", channel_id, exc.kind.value, exc.message)
        page, next_in = None, max(next_in, 600)
    if page is not None:
        posts = {r["external_id"]: r["post_id"] for r in ours}
        items = [Incoming(channel_id, f.kind, f.external_id, f.author, f.text, f.received_at,
                          posts.get(f.in_reply_to) if f.in_reply_to else None) for f in page.items]
        for start in range(0, len(items), MAX_BATCH):
            domain.ingest_interactions(channel.tenant_key, items[start:start + MAX_BATCH])
        cursor = page.cursor
    deps.query(_NEXT_POLL, {"args": json.dumps([channel_id, cursor]), "seconds": next_in,
                            "id": f"poll_channel:{channel_id}"})


# Running totals a platform reports for a post; recorded at the post's publication instant, so that each pull
# replaces the last total instead of adding to it (the read model keeps one value per post, metric and instant).
# Each platform reports some of them: the sandbox impressions, reach and clicks, Mastodon and Bluesky likes and
# replies (and Bluesky quotes).
POST_COUNTERS = ("impressions", "reach", "engagements", "likes", "shares", "replies", "quotes", "clicks")


def pull_metrics(deps: WorkerDeps, channel_id: str) -> None:
    """Record what the platform measures of the channel and its posts now, then set the next pull."""
    domain = deps.domain
    channel = domain.channel(channel_id)
    connector = deps.connectors.get(channel.connector)
    fetch = getattr(connector, "fetch_metrics", None)
    if not channel.connected or fetch is None:
        return  # this connector measures nothing yet: the job is not due again
    ours = deps.query(_PUBLISHED_ON, {"tenant": channel.tenant_key, "channel": channel_id})
    credentials = json.loads(deps.secrets.open(channel.credentials)) if channel.credentials else {}
    ref = ChannelRef(channel.id, channel.platform, channel.handle, credentials)
    next_in = deps.metrics_interval
    try:
        rows = fetch(ref, [(r["external_id"], r["published_at"]) for r in ours])
    except ConnectorError as exc:
        if exc.transient and _retries() < PUBLISH_RETRIES:
            raise dramatiq.Retry(exc.message, delay=int(exc.retry_after * 1000) if exc.retry_after else None) from None
        log.warning("metrics of channel %s failed: %s: %s", channel_id, exc.kind.value, exc.message)
        rows, next_in = [], max(next_in, 3600)
    posts = {r["external_id"]: (r["post_id"], r["published_at"]) for r in ours}
    observations = []
    for row in rows:
        if row["scope"] == "CHANNEL":
            observations.append(Observation(channel_id, "followers", row["followers"], row["measured_at"],
                                            source=channel.connector))
        elif row["external_id"] in posts:
            post_id, published_at = posts[row["external_id"]]
            observations += [Observation(channel_id, metric, row[metric], published_at, post_id, channel.connector)
                             for metric in POST_COUNTERS if metric in row]
    if observations:
        domain.record_metrics(channel.tenant_key, observations)
    deps.query(_NEXT_POLL, {"args": json.dumps([channel_id]), "seconds": next_in,
                            "id": f"pull_metrics:{channel_id}"})


# A report that cannot be made after this many attempts is recorded as FAILED, with the reason.
REPORT_RETRIES = 3

_STORE_FILES = """
INSERT INTO parvis.report_files (tenant_id, agency_id, report_id, format, media_type, content, sha256)
SELECT t.tenant_id, t.agency_id, %(report)s, f.format, f.media_type, f.content, f.sha256
FROM read.tenants t, (VALUES (%(f0)s, %(m0)s, %(c0)s::bytea, %(s0)s), (%(f1)s, %(m1)s, %(c1)s::bytea, %(s1)s))
  AS f (format, media_type, content, sha256)
WHERE t.tenant_id = %(tenant)s
ON CONFLICT (tenant_id, report_id, format)
  DO UPDATE SET media_type = excluded.media_type, content = excluded.content, sha256 = excluded.sha256
RETURNING format
"""


def generate_report(deps: WorkerDeps, report_id: str) -> None:
    """Make a requested report's files, store them, then record their digests (once)."""
    domain = deps.domain
    report = domain.report(report_id)
    if report.status != ReportStatus.REQUESTED.value:
        return
    if deps.read is None:
        raise RuntimeError("generate_report needs a reader of the read models")
    try:
        data = deps.read(lambda db: collect(db, report.tenant_key, report.period_start, report.period_end))
        files = render(data)
    except Exception as exc:
        if _retries() < REPORT_RETRIES:
            raise  # dramatiq tries again with backoff
        log.exception("report %s could not be made", report_id)
        domain.record_report_failed(report_id, f"{type(exc).__name__}: {exc}")
        return
    params: dict[str, Any] = {"report": report_id, "tenant": report.tenant_key}
    for i, f in enumerate(files):
        params |= {f"f{i}": f.format, f"m{i}": f.media_type, f"c{i}": f.content, f"s{i}": f.describe()["sha256"]}
    # The files first: a worker dying between the two leaves files without event, made again by the next try.
    if len(deps.query(_STORE_FILES, params)) != len(files):
        raise RuntimeError(f"report {report_id}: the tenant is not in the read models yet")
    domain.record_report_generated(report_id, {f.format: f.describe() for f in files}, data.summary())


_MONTH_DUE = """
SELECT t.tenant_id FROM read.tenants t
WHERE t.status = 'ACTIVE'
  AND t.created_at < date_trunc('month', %(now)s AT TIME ZONE t.timezone) AT TIME ZONE t.timezone
  AND %(now)s >= (date_trunc('month', %(now)s AT TIME ZONE t.timezone) + make_interval(hours => %(hour)s))
                 AT TIME ZONE t.timezone
  AND NOT EXISTS (
    SELECT 1 FROM read.reports r WHERE r.tenant_id = t.tenant_id AND r.trigger = 'monthly'
      AND r.period_end = date_trunc('month', %(now)s AT TIME ZONE t.timezone) AT TIME ZONE t.timezone)
ORDER BY t.tenant_id
"""
# Monthly reports are asked for at this hour of the first day (tenant's time zone): the night's metric pulls
# of the last day have landed by then.
MONTHLY_REPORT_HOUR = 6


def request_monthly_reports(deps: WorkerDeps) -> int:
    """Ask for last month's report of every active tenant that has none yet; returns how many were asked for.

    Run by every worker on a timer; the report of a month has one id per tenant, so two workers asking at the
    same time make one report."""
    domain = deps.domain
    asked = 0
    for row in deps.query(_MONTH_DUE, {"now": domain.now(), "hour": MONTHLY_REPORT_HOUR}):
        try:
            if domain.request_monthly_report(row["tenant_id"]) is not None:
                asked += 1
        except Conflict:
            continue  # another worker asked first
    return asked


JOBS: dict[str, Callable[..., None]] = {
    "generate_report": generate_report,
    "pull_metrics": pull_metrics,
    "poll_channel": poll_channel,
    "detect_spike": detect_spike,
    "check_channel": check_channel,
    "publish_post": publish_post,
    "expire_approval": expire_approval,
    "analyse_interaction": analyse_interaction,
    "check_response_target": check_response_target,
    "send_reply": send_reply,
}


def declare_actors(broker: RedisBroker, deps: WorkerDeps) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Register every job as an actor on this broker (no global broker at import time)."""
    actors: dict[str, dramatiq.Actor[Any, Any]] = {}
    for name, fn in JOBS.items():

        def run(*args: Any, _fn: Callable[..., None] = fn, _name: str = name, **kwargs: Any) -> None:
            started, outcome = time.perf_counter(), "error"
            try:
                with job_context(_name):
                    _fn(deps, *args, **kwargs)
                outcome = "ok"
            except dramatiq.Retry:
                outcome = "retry"
                raise
            except Conflict:
                # Another job changed the same aggregate first (a poll and a check of one channel): run again.
                outcome = "retry"
                raise dramatiq.Retry("concurrent change; retrying", delay=random.randint(50, 500)) from None  # noqa: S311 - jitter, not a secret
            finally:
                telemetry.JOB_SECONDS.labels(_name, outcome).observe(time.perf_counter() - started)

        actors[name] = dramatiq.Actor(
            run,
            broker=broker,
            actor_name=name,
            queue_name=QUEUE,
            priority=0,
            options={"max_retries": 8, "min_backoff": 500, "max_backoff": 60_000},
        )
    return actors
