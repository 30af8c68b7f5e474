"""Jobs derived from events: an outbox in PostgreSQL, followed like a projection, pumped into Redis.

The dispatcher writes one row per job, in the same transaction as its tracking position, so a job is
derived exactly once. The pump enqueues pending rows into Redis and enqueues them again when they are
not done after a while, so a message that Redis lost is re-derived, never lost. Actors are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import dramatiq
from redis.exceptions import RedisError

from projections.base import Envelope, Projection
from workers.broker import QUEUE

log = logging.getLogger("parvis.dispatcher")

_CLAIM = """
SELECT id, actor, args, tenant_id FROM parvis.jobs
WHERE status = 'pending' AND due_at <= now()
  AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => $1))
ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED
"""


class Dispatcher(Projection):
    """Derives jobs from events and marks them done when their outcome is recorded."""

    name = "dispatcher"
    version = 1
    tables = {"jobs": "parvis.jobs"}

    def ddl(self, t: Mapping[str, str]) -> str:
        return f"""
CREATE TABLE {t["jobs"]} (
    id text PRIMARY KEY, tenant_id text NOT NULL, actor text NOT NULL, args jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending', attempts int NOT NULL DEFAULT 0,
    due_at timestamptz NOT NULL, enqueued_at timestamptz, created_at timestamptz NOT NULL,
    done_at timestamptz, position bigint NOT NULL);
CREATE INDEX ON {t["jobs"]} (due_at) WHERE status = 'pending';
"""

    async def apply(self, conn: asyncpg.Connection, t: Mapping[str, str], batch: Sequence[Envelope]) -> set[str]:
        new: list[tuple[Any, ...]] = []
        done: list[tuple[str, Any]] = []
        cancelled: list[str] = []
        for env in batch:
            key = (env.aggregate_type, env.event_type)
            if key == ("Channel", "Connected"):
                check = f"{env.originator_id}@1"
                new.append(self._job(env, f"check_channel:{check}", "check_channel", [env.originator_id, check]))
            elif key == ("Channel", "CredentialsReplaced"):
                check = f"{env.originator_id}@{env.e.credentials_version}"
                new.append(self._job(env, f"check_channel:{check}", "check_channel", [env.originator_id, check]))
            elif key == ("Channel", "HealthChecked") and env.e.check_id:
                done.append((f"check_channel:{env.e.check_id}", env.at))
            elif key == ("Channel", "Disconnected"):
                cancelled.append(f"check_channel:{env.originator_id}@")
        if new:
            await conn.executemany(
                f"INSERT INTO {t['jobs']} (id, tenant_id, actor, args, due_at, created_at, position) "
                "VALUES ($1, $2, $3, $4::jsonb, $5, $5, $6) ON CONFLICT (id) DO NOTHING",
                new,
            )
        if done:
            await conn.executemany(
                f"UPDATE {t['jobs']} SET status = 'done', done_at = $2 WHERE id = $1 AND status = 'pending'", done
            )
        for prefix in cancelled:
            await conn.execute(
                f"UPDATE {t['jobs']} SET status = 'cancelled' WHERE status = 'pending' AND starts_with(id, $1)", prefix
            )
        return set()

    @staticmethod
    def _job(env: Envelope, job_id: str, actor: str, args: list[Any]) -> tuple[Any, ...]:
        return (job_id, env.scope, actor, json.dumps(args), env.at, env.position)


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
                while not self._stop.is_set():
                    moved = await self.pump_once(conn)
                    if moved == 0:
                        await self._sleep(self.tick)
            except asyncpg.UndefinedTableError:
                log.debug("pump: the dispatcher has not created its outbox yet")
                await self._sleep(self.tick)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("pump: %s; reconnecting", exc)
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
                        options={"parvis_job": r["id"], "parvis_tenant": r["tenant_id"]},
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
