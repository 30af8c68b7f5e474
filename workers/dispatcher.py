"""Jobs derived from events: an outbox in PostgreSQL, followed like a projection, pumped into Redis.

The dispatcher writes one row per job, in the same transaction as its tracking position, so a job is
derived exactly once. The pump enqueues pending rows into Redis and enqueues them again when they are
not done after a while, so a message that Redis lost is re-derived, never lost. Actors are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import dramatiq
from redis.exceptions import RedisError

from projections.base import Envelope, Projection
from workers import telemetry
from workers.broker import QUEUE

log = logging.getLogger("parvis.dispatcher")

_CLAIM = """
SELECT id, actor, args, tenant_id, traceparent FROM parvis.jobs
WHERE status = 'pending' AND due_at <= now()
  AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => $1))
ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED
"""


class Dispatcher(Projection):
    """Derives jobs from events and marks them done when their outcome is recorded."""

    name = "dispatcher"
    version = 1  # the outbox is never rebuilt blue/green: re-deriving would run done jobs again
    tables = {"jobs": "parvis.jobs"}

    def ddl(self, t: Mapping[str, str]) -> str:
        return f"""
CREATE TABLE {t["jobs"]} (
    id text PRIMARY KEY, tenant_id text NOT NULL, actor text NOT NULL, args jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending', attempts int NOT NULL DEFAULT 0,
    due_at timestamptz NOT NULL, enqueued_at timestamptz, created_at timestamptz NOT NULL,
    done_at timestamptz, position bigint NOT NULL, traceparent text);
CREATE INDEX ON {t["jobs"]} (due_at) WHERE status = 'pending';
"""

    async def apply(self, conn: asyncpg.Connection, t: Mapping[str, str], batch: Sequence[Envelope]) -> set[str]:
        plan = _Plan()
        for env in batch:
            rule = getattr(self, f"_{env.aggregate_type}_{env.event_type}", None)
            if rule is not None:
                rule(plan, env)
        await plan.write(conn, t["jobs"])
        return set()

    # ---------------------------------------------------------------- channels: check new credentials
    def _Channel_Connected(self, plan: _Plan, env: Envelope) -> None:
        check = f"{env.originator_id}@1"
        plan.new(self._job(env, f"check_channel:{check}", "check_channel", [env.originator_id, check]))
        # A recurring job: each run keeps the platform's cursor in the job's arguments and sets its next time.
        plan.new(self._job(env, f"poll_channel:{env.originator_id}", "poll_channel", [env.originator_id, None]))
        plan.new(self._job(env, f"pull_metrics:{env.originator_id}", "pull_metrics", [env.originator_id]))

    def _Channel_CredentialsReplaced(self, plan: _Plan, env: Envelope) -> None:
        check = f"{env.originator_id}@{env.e.credentials_version}"
        plan.new(self._job(env, f"check_channel:{check}", "check_channel", [env.originator_id, check]))

    def _Channel_HealthChecked(self, plan: _Plan, env: Envelope) -> None:
        if env.e.check_id:
            plan.set(f"check_channel:{env.e.check_id}", "done", env)

    def _Channel_Disconnected(self, plan: _Plan, env: Envelope) -> None:
        plan.cancel_prefix(f"check_channel:{env.originator_id}@")
        plan.set(f"poll_channel:{env.originator_id}", "cancelled", env)
        plan.set(f"pull_metrics:{env.originator_id}", "cancelled", env)

    # ---------------------------------------------------------------- posts: publish when due, expire approvals
    # One publish job per post: scheduling again moves it, holding or cancelling stops it, releasing restarts it.
    def _Post_Scheduled(self, plan: _Plan, env: Envelope) -> None:
        job = self._job(env, f"publish_post:{env.originator_id}", "publish_post", [env.originator_id])
        plan.upsert((*job[:4], env.e.at, *job[5:]))

    def _Post_Released(self, plan: _Plan, env: Envelope) -> None:
        if env.e.status == "SCHEDULED":
            plan.set(f"publish_post:{env.originator_id}", "pending", env, restart=True)

    def _post_stopped(self, plan: _Plan, env: Envelope) -> None:
        plan.set(f"publish_post:{env.originator_id}", "cancelled", env)
        plan.cancel_prefix(f"expire_approval:{env.originator_id}#")

    _Post_Held = _Post_Cancelled = _post_stopped

    def _post_published(self, plan: _Plan, env: Envelope) -> None:
        plan.set(f"publish_post:{env.originator_id}", "done", env)

    _Post_Published = _Post_PublishFailed = _post_published

    def _Post_Submitted(self, plan: _Plan, env: Envelope) -> None:
        hours = env.e.policy.get("expires_after_hours")
        if hours and env.e.status in ("IN_REVIEW", "AWAITING_CLIENT"):
            job_id = f"expire_approval:{env.originator_id}#{env.e.submission}"
            job = self._job(env, job_id, "expire_approval", [env.originator_id, env.e.submission])
            plan.new((*job[:4], env.at + timedelta(hours=hours), *job[5:]))

    def _post_reviewed(self, plan: _Plan, env: Envelope) -> None:
        # Nothing to expire once the review chain has ended (approved to the end, sent back, or expired).
        if env.event_type != "Approved" or env.e.status == "APPROVED":
            plan.cancel_prefix(f"expire_approval:{env.originator_id}#")

    _Post_Approved = _Post_ChangesRequested = _Post_Rejected = _Post_ApprovalExpired = _post_reviewed

    # ---------------------------------------------------------------- interactions: analyse, watch the target, reply
    def _Interaction_Received(self, plan: _Plan, env: Envelope) -> None:
        iid = env.originator_id
        plan.new(self._job(env, f"analyse_interaction:{iid}", "analyse_interaction", [iid]))
        job = self._job(env, f"check_response_target:{iid}", "check_response_target", [iid])
        plan.new((*job[:4], env.e.due_by, *job[5:]))
        # One spike check per tenant and five minutes of arrivals, when those five minutes are over.
        end = _bucket_end(env.at)
        job_id = f"detect_spike:{env.scope}@{end.isoformat()}"
        job = self._job(env, job_id, "detect_spike", [env.scope, end.isoformat()])
        plan.new((*job[:4], end, *job[5:]))

    def _Interaction_Analysed(self, plan: _Plan, env: Envelope) -> None:
        plan.set(f"analyse_interaction:{env.originator_id}", "done", env)

    def _interaction_decided(self, plan: _Plan, env: Envelope) -> None:
        e = env.e
        if e.decision != "ESCALATE":
            plan.set(f"check_response_target:{env.originator_id}", "cancelled", env)
        if e.decision == "REPLY":
            job_id = f"send_reply:{env.originator_id}@{env.version}"
            plan.new(self._job(env, job_id, "send_reply", [env.originator_id, env.version]))

    _Interaction_Decided = _Interaction_Overturned = _interaction_decided

    def _Interaction_TargetBreached(self, plan: _Plan, env: Envelope) -> None:
        plan.set(f"check_response_target:{env.originator_id}", "done", env)

    def _Interaction_ReplySent(self, plan: _Plan, env: Envelope) -> None:
        plan.set(f"send_reply:{env.originator_id}@{env.e.decision_version}", "done", env)

    # ---------------------------------------------------------------- reports: made once each
    def _Report_Requested(self, plan: _Plan, env: Envelope) -> None:
        plan.new(self._job(env, f"generate_report:{env.originator_id}", "generate_report", [env.originator_id]))

    def _report_finished(self, plan: _Plan, env: Envelope) -> None:
        plan.set(f"generate_report:{env.originator_id}", "done", env)

    _Report_Generated = _Report_Failed = _report_finished

    @staticmethod
    def _job(env: Envelope, job_id: str, actor: str, args: list[Any]) -> tuple[Any, ...]:
        """(id, tenant, actor, args, due at, created at, position, traceparent): due as soon as the event happened."""
        return (job_id, env.scope, actor, json.dumps(args), env.at, env.at, env.position, env.meta.get("traceparent"))


_INSERT = (
    "INSERT INTO {jobs} (id, tenant_id, actor, args, due_at, created_at, position, traceparent) "
    "VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING"
)
_UPSERT = (
    "INSERT INTO {jobs} (id, tenant_id, actor, args, due_at, created_at, position, traceparent) "
    "VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, "
    "status = 'pending', enqueued_at = NULL, attempts = 0, done_at = NULL, position = excluded.position"
)
_FINISH = "UPDATE {jobs} SET status = $2, done_at = $3 WHERE id = $1 AND status = 'pending'"
_RESTART = "UPDATE {jobs} SET status = 'pending', enqueued_at = NULL, attempts = 0, done_at = NULL WHERE id = $1"
_CANCEL_PREFIX = "UPDATE {jobs} SET status = 'cancelled' WHERE status = 'pending' AND starts_with(id, $1)"


def _bucket_end(at: datetime) -> datetime:
    """The end of the five-minute bucket an instant falls in."""
    start = at.replace(minute=at.minute - at.minute % 5, second=0, microsecond=0)
    return start + timedelta(minutes=5)


class _Plan:
    """The job changes of one batch, applied in event order; runs of the same statement go in one round trip."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, tuple[Any, ...]]] = []

    def new(self, job: tuple[Any, ...]) -> None:
        self.steps.append((_INSERT, job))

    def upsert(self, job: tuple[Any, ...]) -> None:
        self.steps.append((_UPSERT, job))

    def set(self, job_id: str, status: str, env: Envelope, *, restart: bool = False) -> None:
        self.steps.append((_RESTART, (job_id,)) if restart else (_FINISH, (job_id, status, env.at)))

    def cancel_prefix(self, prefix: str) -> None:
        self.steps.append((_CANCEL_PREFIX, (prefix,)))

    async def write(self, conn: asyncpg.Connection, jobs: str) -> None:
        for sql, group in itertools.groupby(self.steps, key=lambda step: step[0]):
            await conn.executemany(sql.format(jobs=jobs), [args for _, args in group])


class Pump:
    """Moves due jobs from the outbox into Redis; again after `redeliver_after` if still not done."""

    def __init__(
        self,
        dsn: str,
        broker: dramatiq.Broker,
        *,
        redeliver_after: float = 30.0,
        tick: float = 0.5,
        max_attempts: int = 20,
    ) -> None:
        self.dsn = dsn
        self.broker = broker
        self.redeliver_after = redeliver_after
        self.tick = tick
        self.max_attempts = max_attempts
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("pump: %s", exc)
                await self._sleep(2)
                continue
            try:
                measured = 0.0
                while not self._stop.is_set():
                    moved = await self.pump_once(conn)
                    if asyncio.get_running_loop().time() - measured >= 5:
                        telemetry.record_depth(dict(await conn.fetchrow(telemetry.DEPTH_SQL)))
                        measured = asyncio.get_running_loop().time()
                    if moved == 0:
                        await self._sleep(self.tick)
            except asyncpg.UndefinedTableError:
                log.debug("pump: the dispatcher has not created its outbox yet")
                await self._sleep(self.tick)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
                log.warning("pump: %s; reconnecting", exc)
            except Exception:
                # The pump must outlive anything (its end would end the worker process): log, reconnect.
                log.exception("pump failed; reconnecting")
                await self._sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def pump_once(self, conn: asyncpg.Connection) -> int:
        """Enqueue one batch of due jobs; returns how many were handed to Redis."""
        try:
            async with conn.transaction():
                rows = await conn.fetch(_CLAIM, self.redeliver_after, 200)
                if not rows:
                    return 0
                messages = [
                    dramatiq.Message(
                        queue_name=QUEUE,
                        actor_name=r["actor"],
                        args=tuple(json.loads(r["args"])),
                        kwargs={},
                        options={"parvis_job": r["id"], "parvis_tenant": r["tenant_id"],
                                 "parvis_traceparent": r["traceparent"]},
                    )
                    for r in rows
                ]
                await asyncio.to_thread(self._enqueue_all, messages)
                await conn.execute(
                    "UPDATE parvis.jobs SET enqueued_at = now(), attempts = attempts + 1, "
                    "status = CASE WHEN attempts + 1 >= $2 THEN 'failed' ELSE status END WHERE id = ANY($1)",
                    [r["id"] for r in rows],
                    self.max_attempts,
                )
                return len(rows)
        except RedisError as exc:
            log.warning("pump: Redis unavailable (%s); jobs stay pending and are sent when it is back", exc)
            await self._sleep(1)
            return 0

    def _enqueue_all(self, messages: list[dramatiq.Message[Any]]) -> None:
        for message in messages:
            self.broker.enqueue(message)
