"""The worker process: dramatiq worker threads, the dispatcher (a tracked projection) and the pump."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import dramatiq
import redis.asyncio
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from redis.exceptions import RedisError

from parvis import wiring
from parvis.settings import Settings
from projections.checkpoints import checkpoint_heads
from projections.figures import Reader
from projections.runner import Runner
from workers.actors import WorkerDeps, declare_actors, request_monthly_reports
from workers.analysis import Analyzer
from workers.broker import make_broker
from workers.connectors.registry import connectors
from workers.dispatcher import Dispatcher, Pump

log = logging.getLogger("parvis.worker")


async def checkpoint_loop(settings: Settings, stopped: asyncio.Event) -> None:
    """Every PARVIS_CHECKPOINT_SECONDS, sign the history heads that moved; 0 turns it off."""
    interval = settings.checkpoint_seconds
    if interval <= 0:
        return
    assert settings.database_url
    assert settings.redis_url
    key = wiring.checkpoint_key(settings)
    namespace = settings.queue_namespace
    client = redis.asyncio.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10)
    try:
        while not stopped.is_set():
            try:
                # One worker signs per round; the lock lapses before the next round so that any may take it.
                if await client.set(f"{namespace}:checkpoints:lock", "1", nx=True, px=max(1, int(interval * 900))):
                    conn = await asyncpg.connect(settings.database_url)
                    try:
                        done = await checkpoint_heads(conn, client, namespace, key)
                    finally:
                        await conn.close()
                    if done.signed:
                        log.info("signed %d history checkpoints", len(done.signed))
            except (OSError, asyncpg.PostgresError, RedisError) as exc:
                log.warning("checkpoints: %s; trying again next round", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), interval)
    finally:
        await client.aclose()


async def report_loop(settings: Settings, deps: WorkerDeps, stopped: asyncio.Event) -> None:
    """Every PARVIS_REPORT_CHECK_SECONDS, ask for the monthly reports that are due; 0 turns it off."""
    interval = settings.report_check_seconds
    while interval > 0 and not stopped.is_set():
        try:
            asked = await asyncio.to_thread(request_monthly_reports, deps)
            if asked:
                log.info("asked for %d monthly reports", asked)
        except Exception:
            log.exception("monthly reports: trying again next round")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), interval)


def read_models(database_url: str) -> Callable[[Callable[[Reader], Awaitable[Any]]], Any]:
    """Run an async reading function on its own connection, from a worker thread."""

    def read(fn: Callable[[Reader], Awaitable[Any]]) -> Any:
        async def run() -> Any:
            conn = await asyncpg.connect(database_url)
            try:
                async with conn.transaction(readonly=True):
                    return await fn(conn)
            finally:
                await conn.close()

        return asyncio.run(run())

    return read


def run_workers(settings: Settings) -> None:
    """Run until SIGTERM or Ctrl-C."""
    assert settings.database_url
    assert settings.redis_url
    broker = make_broker(settings.redis_url, settings.queue_namespace)
    dramatiq.set_broker(broker)
    domain = wiring.domain(settings)
    reader = ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True,
                            kwargs={"autocommit": True, "row_factory": dict_row})

    def query(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with reader.connection() as conn:
            return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    deps = WorkerDeps(domain=domain, secrets=wiring.secret_box(settings), connectors=connectors(),
                      analyzer=Analyzer(), query=query, read=read_models(settings.database_url),
                      poll_interval=settings.poll_seconds,
                      metrics_interval=settings.metrics_seconds)
    declare_actors(broker, deps)
    worker = dramatiq.Worker(broker, worker_threads=settings.worker_threads, worker_timeout=1000)
    worker.start()
    runner = Runner(settings.database_url, [Dispatcher()], batch_size=settings.projection_batch_size)
    pump = Pump(settings.database_url, broker, redeliver_after=settings.job_redeliver_seconds)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()

        def stop() -> None:
            runner.stop()
            pump.stop()
            stopped.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        await asyncio.gather(runner.run(), pump.run(), checkpoint_loop(settings, stopped),
                             report_loop(settings, deps, stopped))

    try:
        asyncio.run(main())
    finally:
        try:
            worker.stop(timeout=10_000)
            broker.close()
        except RedisError as exc:
            # Jobs in flight could not be handed back to Redis; the pump hands them over again once it is back.
            log.warning("stopped without Redis (%s): unfinished jobs will be redelivered from the outbox", exc)
        reader.close()
        domain.close()
