"""The worker process: dramatiq worker threads, the dispatcher (a tracked projection) and the pump."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import dramatiq
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from redis.exceptions import RedisError
from workers.analysis import Analyzer

from parvis import wiring
from parvis.settings import Settings
from projections.runner import Runner
from workers.actors import WorkerDeps, declare_actors
from workers.broker import make_broker
from workers.connectors.registry import connectors
from workers.dispatcher import Dispatcher, Pump

log = logging.getLogger("parvis.worker")


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
                      analyzer=Analyzer(), query=query, poll_interval=settings.poll_seconds)
    declare_actors(broker, deps)
    worker = dramatiq.Worker(broker, worker_threads=settings.worker_threads, worker_timeout=1000)
    worker.start()
    runner = Runner(settings.database_url, [Dispatcher()], batch_size=settings.projection_batch_size)
    pump = Pump(settings.database_url, broker, redeliver_after=settings.job_redeliver_seconds)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            runner.stop()
            pump.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        await asyncio.gather(runner.run(), pump.run())

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
