"""The projection runner: follows the event store in batches, one active runner per projection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from projections import telemetry as metrics
from projections.base import Envelope, Projection
from projections.store import EVENTS, head_position

log = logging.getLogger("parvis.projections")

EVENTS_CHANNEL = "parvis_events"
PROJECTED_CHANNEL = "parvis_projected"
LIVE_CHANNEL = "parvis_live"
_SELECT = (
    f"SELECT notification_id, originator_id, originator_version, topic, state FROM {EVENTS} "
    "WHERE notification_id > $1 ORDER BY notification_id LIMIT $2"
)


def table_names(projection: Projection, *, next_: bool = False) -> dict[str, str]:
    """Qualified table names of a projection, for its live tables or the ones a rebuild fills."""
    suffix = "__next" if next_ else ""
    return {short: f"{name}{suffix}" for short, name in projection.tables.items()}


def tracking_name(projection: Projection, *, next_: bool = False) -> str:
    return f"{projection.name}@next" if next_ else projection.name


def lock_key(projection: Projection) -> str:
    return f"parvis.projection.{projection.name}"


@dataclass
class Step:
    position: int
    processed: int
    last_at: datetime | None = None


async def process(conn: asyncpg.Connection, projection: Projection, *, next_: bool, batch_size: int) -> Step:
    """One batch inside the caller's transaction: read after the tracked position, apply, track."""
    tname = tracking_name(projection, next_=next_)
    position = await conn.fetchval("SELECT position FROM parvis.tracking WHERE projection = $1 FOR UPDATE", tname)
    if position is None:
        raise RuntimeError(f"projection {tname} has no tables yet")
    rows = await conn.fetch(_SELECT, position, batch_size)
    if not rows:
        return Step(position, 0)
    batch = [Envelope.from_row(r) for r in rows]
    with metrics.tracer.start_as_current_span(
        f"project {projection.name}", links=metrics.links([{"traceparent": env.traceparent} for env in batch]),
        attributes={"parvis.events": len(batch), "parvis.position": batch[-1].position},
    ):
        touched = await projection.apply(conn, table_names(projection, next_=next_), batch)
    last = batch[-1].position
    track = "UPDATE parvis.tracking SET position = $2, updated_at = now() WHERE projection = $1"
    if next_:
        await conn.execute(track, tname, last)
    else:
        # The new position and its notices in one round trip: on a busy database each round trip of a batch is a
        # wait, and the batches' waits are the lag from commit to read model (make bench, B4).
        notices = [(PROJECTED_CHANNEL, f"{projection.name}:{last}")]
        if projection.live and touched:
            notices += [(LIVE_CHANNEL, json.dumps({"p": last, "from": batch[0].position, "t": chunk}))
                        for chunk in _chunks(sorted(touched), 100)]
        calls = ", ".join(f"pg_notify(${3 + 2 * i}, ${4 + 2 * i})" for i in range(len(notices)))
        await conn.execute(f"WITH moved AS ({track}) SELECT {calls}", tname, last,
                           *[part for notice in notices for part in notice])
    return Step(last, len(batch), batch[-1].at)


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


async def create_tables(conn: asyncpg.Connection, projection: Projection, *, next_: bool) -> None:
    """Create a projection's tables (dropping leftovers) and its tracking row, atomically."""
    names = table_names(projection, next_=next_)
    owner = await conn.fetchval("SELECT current_user")
    async with conn.transaction():
        for name in names.values():
            await conn.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
        await conn.execute(projection.create_sql(names, owner))
        await conn.execute(
            "INSERT INTO parvis.tracking (projection, position, version) VALUES ($1, 0, $2) "
            "ON CONFLICT (projection) DO UPDATE SET position = 0, version = $2, updated_at = now()",
            tracking_name(projection, next_=next_),
            projection.version,
        )


async def tracked(conn: asyncpg.Connection, projection: Projection, *, next_: bool = False) -> tuple[int, int] | None:
    """(position, version) of a projection's tracking row, or None when it has no tables."""
    row = await conn.fetchrow(
        "SELECT position, version FROM parvis.tracking WHERE projection = $1", tracking_name(projection, next_=next_)
    )
    return (row["position"], row["version"]) if row else None


async def rebuild(
    conn: asyncpg.Connection,
    projection: Projection,
    *,
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
    fresh: bool = False,
) -> int:
    """Blue/green rebuild: fill new tables beside the live ones, then switch when caught up.

    Resumes a rebuild that was interrupted (its tracking row survives), unless `fresh` is set.
    Returns the position reached.
    """
    if fresh or await tracked(conn, projection, next_=True) is None:
        await create_tables(conn, projection, next_=True)
    head = await head_position(conn)
    while True:
        async with conn.transaction():
            step = await process(conn, projection, next_=True, batch_size=batch_size)
        if progress:
            progress(step.position, head)
        if step.processed == 0 or step.position >= head:
            break
    live = table_names(projection)
    nxt = table_names(projection, next_=True)
    async with conn.transaction():
        # Blocks the live runner between two of its batches; it resumes on the new tables.
        await conn.execute("SELECT 1 FROM parvis.tracking WHERE projection = $1 FOR UPDATE", tracking_name(projection))
        while (await process(conn, projection, next_=True, batch_size=batch_size)).processed:
            pass
        for short, name in live.items():
            await conn.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
            await conn.execute(f"ALTER TABLE {nxt[short]} RENAME TO {name.split('.')[-1]}")
        position = await conn.fetchval(
            "DELETE FROM parvis.tracking WHERE projection = $1 RETURNING position",
            tracking_name(projection, next_=True),
        )
        await conn.execute(
            "INSERT INTO parvis.tracking (projection, position, version) VALUES ($1, $2, $3) "
            "ON CONFLICT (projection) DO UPDATE SET position = $2, version = $3, updated_at = now()",
            tracking_name(projection),
            position,
            projection.version,
        )
        await conn.execute("SELECT pg_notify($1, $2)", PROJECTED_CHANNEL, f"{projection.name}:{position}")
    if progress:
        progress(position, head)
    return int(position)


class Runner:
    """Runs projections in one process: each takes its advisory lock or waits as a standby."""

    def __init__(
        self,
        dsn: str,
        projections: Sequence[Projection],
        *,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        standby_retry_seconds: float = 1.0,
    ) -> None:
        self.dsn = dsn
        self.projections = list(projections)
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.standby_retry_seconds = standby_retry_seconds
        self.active: set[str] = set()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until stop() is called."""
        tasks = [asyncio.create_task(self._supervise(p), name=p.name) for p in self.projections]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, projection: Projection) -> None:
        while not self._stop.is_set():
            try:
                await self._run_one(projection)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
                log.warning("projection %s: %s; reconnecting", projection.name, exc)
            except Exception:
                # The task must not end while the runner runs (nobody would notice: the read model would stop
                # and every mutation would wait out its read-your-writes bound). The batch was rolled back; the
                # projection starts again from its tracked position.
                log.exception("projection %s failed; starting again", projection.name)
            self.active.discard(projection.name)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.standby_retry_seconds)

    async def _run_one(self, projection: Projection) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock_key(projection))
            if not got:
                log.debug("projection %s: standby", projection.name)
                return
            self.active.add(projection.name)
            log.info("projection %s: active", projection.name)
            state = await tracked(conn, projection)
            if state is None:
                await create_tables(conn, projection, next_=False)
            elif state[1] != projection.version:
                log.info("projection %s: version %s -> %s, rebuilding", projection.name, state[1], projection.version)
                await rebuild(conn, projection, batch_size=self.batch_size)
            wake = asyncio.Event()
            await conn.add_listener(EVENTS_CHANNEL, lambda *_: wake.set())
            while not self._stop.is_set():
                wake.clear()
                async with conn.transaction():
                    step = await process(conn, projection, next_=False, batch_size=self.batch_size)
                if step.processed and step.last_at is not None:
                    # How far behind the event store this read model is, in events and in time.
                    # A batch short of the limit reached the head: asking for the head again would cost a round trip.
                    full = step.processed >= self.batch_size
                    behind = max(0, await head_position(conn) - step.position) if full else 0
                    metrics.LAG_EVENTS.labels(projection.name).set(behind)
                    metrics.DELAY.labels(projection.name).observe((datetime.now(UTC) - step.last_at).total_seconds())
                    metrics.PROCESSED.labels(projection.name).inc(step.processed)
                    metrics.POSITION.labels(projection.name).set(step.position)
                elif step.processed == 0:
                    metrics.LAG_EVENTS.labels(projection.name).set(0)
                if step.processed == 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(wake.wait(), self.poll_seconds)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close(timeout=2))


async def positions(conn: asyncpg.Connection, names: Sequence[str]) -> Mapping[str, int]:
    """The tracked position of each named projection."""
    rows = await conn.fetch("SELECT projection, position FROM parvis.tracking WHERE projection = ANY($1)", list(names))
    return {r["projection"]: r["position"] for r in rows}
