"""B3: projection catch-up of every read model, Parvis's batched runner against the library's stock runner.

Both process the same first `count` events of the store into fresh tables (the `__next` tables a rebuild uses),
with the same handlers (each read model's `apply`), one read model per runner, all read models at once:

- Parvis: the runner's own step (`projections.runner.process`), hundreds of events per transaction;
- baseline: `eventsourcing.projection.ProjectionRunner`, the library's stock runner (its subscription to the
  notification log, its processing thread, its tracking table), whose projection processes one event per
  transaction: the read model's rows and the tracking record are written together, then committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import asyncpg
from eventsourcing.persistence import Mapper, StoredEvent, Tracking

from projections.base import Envelope
from projections.base import Projection as ReadModel
from projections.runner import create_tables, process, table_names, tracking_name


async def cap_of(dsn: str, count: int) -> tuple[int, int]:
    """(position of the `count`-th event, number of events up to it)."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT max(notification_id) AS cap, count(*) AS n FROM (SELECT notification_id FROM public.parvis_events "
            "ORDER BY notification_id LIMIT $1) first", count)
        assert row is not None
        return int(row["cap"] or 0), int(row["n"])
    finally:
        await conn.close()


async def fresh_tables(dsn: str, models: Sequence[ReadModel]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for model in models:
            await create_tables(conn, model, next_=True)
            await conn.execute(f"DROP TABLE IF EXISTS public.{_view_name(model)}_tracking")
    finally:
        await conn.close()


async def drop_tables(dsn: str, models: Sequence[ReadModel]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for model in models:
            for name in table_names(model, next_=True).values():
                await conn.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
            await conn.execute("DELETE FROM parvis.tracking WHERE projection = $1", tracking_name(model, next_=True))
            await conn.execute(f"DROP TABLE IF EXISTS public.{_view_name(model)}_tracking")
    finally:
        await conn.close()


async def parvis_catch_up(dsn: str, models: Sequence[ReadModel], count: int, batch_size: int = 500) -> float:
    """Seconds for Parvis's runner step to take every read model through the first `count` events."""
    await fresh_tables(dsn, models)
    conns = [await asyncpg.connect(dsn) for _ in models]

    async def one(conn: asyncpg.Connection, model: ReadModel) -> None:
        done = 0
        while done < count:
            async with conn.transaction():
                step = await process(conn, model, next_=True, batch_size=min(batch_size, count - done))
            if step.processed == 0:
                break
            done += step.processed

    try:
        start = time.perf_counter()
        await asyncio.gather(*(one(c, m) for c, m in zip(conns, models, strict=True)))
        return time.perf_counter() - start
    finally:
        for conn in conns:
            await conn.close()


def stock_catch_up(dsn: str, env: dict[str, str], models: Sequence[ReadModel], cap: int,
                   timeout: float = 3600) -> float:
    """Seconds for the library's stock ProjectionRunner (one per read model, all running) to reach `cap`."""
    from eventsourcing.postgres import PostgresTrackingRecorder
    from eventsourcing.projection import Projection, ProjectionRunner

    from domain.app import Parvis

    asyncio.run(fresh_tables(dsn, models))
    done = threading.Event()
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    lock = threading.Lock()

    class StoredEvents(Parvis):
        """The application as the stock runner subscribes to it; events reach the handlers as stored, so they
        decode them as Parvis's runner does (the same work on both sides)."""

        name = "Parvis"  # the same notification log (the library names an application after its class)

        def construct_mapper(self) -> Mapper[str]:
            return _PassThrough(transcoder=super().construct_mapper().transcoder)

    def projection_class(model: ReadModel) -> type[Projection[PostgresTrackingRecorder]]:
        class OneTransactionPerEvent(Projection[PostgresTrackingRecorder]):
            name = _view_name(model)
            topics: ClassVar[tuple[str, ...]] = ()

            def __init__(self, view: PostgresTrackingRecorder) -> None:
                super().__init__(view)
                self.loop = asyncio.new_event_loop()
                self.conn: asyncpg.Connection | None = None
                self.tables = table_names(model, next_=True)
                self.insert = (f"INSERT INTO public.{view.tracking_table_name} VALUES ($1, $2) ON CONFLICT "
                               "(application_name) DO UPDATE SET notification_id = excluded.notification_id")

            def process_event(self, domain_event: Any, tracking: Tracking) -> None:
                started.setdefault(self.name, time.perf_counter())
                self.loop.run_until_complete(self._one(domain_event, tracking))
                if tracking.notification_id >= cap and self.name not in finished:
                    with lock:
                        finished[self.name] = time.perf_counter()
                        if len(finished) == len(models):
                            done.set()

            async def _one(self, stored: StoredEvent, tracking: Tracking) -> None:
                if self.conn is None:
                    self.conn = await asyncpg.connect(dsn)
                envelope = Envelope(position=tracking.notification_id, originator_id=stored.originator_id,
                                    version=stored.originator_version, topic=stored.topic, state=bytes(stored.state))
                async with self.conn.transaction():
                    await model.apply(self.conn, self.tables, [envelope])
                    await self.conn.execute(self.insert, tracking.application_name, tracking.notification_id)

            def close(self) -> None:
                if self.conn is not None:
                    self.loop.run_until_complete(self.conn.close())
                self.loop.close()

        return OneTransactionPerEvent

    runners: list[Any] = []
    try:
        for model in models:
            runners.append(ProjectionRunner(application_class=StoredEvents, projection_class=projection_class(model),
                                            view_class=PostgresTrackingRecorder, env=env))
        deadline = time.monotonic() + timeout
        while not done.wait(0.5):
            for runner in runners:
                if runner.is_interrupted.is_set():
                    runner.run_forever(0)  # re-raises the error that stopped it
                    raise RuntimeError("a stock runner stopped before the cap")
            if time.monotonic() > deadline:
                raise TimeoutError("the stock runners did not reach the cap")
        # From the first event processed (the runners' start-up is not counted) to the last runner's cap.
        return max(finished.values()) - min(started.values())
    finally:
        for runner in runners:
            with contextlib.suppress(Exception):
                runner.__exit__(None, None, None)
            with contextlib.suppress(Exception):
                runner.projection.close()


class _PassThrough(Mapper[str]):
    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return stored_event


def _view_name(model: ReadModel) -> str:
    return f"bench_stock_{model.name}"
