"""Notifications from the projector: positions reached (read-your-writes) and tenants touched (live)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

log = logging.getLogger("parvis.api.live")

PROJECTED_CHANNEL = "parvis_projected"
LIVE_CHANNEL = "parvis_live"


class Live:
    """One LISTEN connection per API process, fanned out to waiters and subscribers."""

    def __init__(self, dsn: str, projections: Sequence[str]) -> None:
        self._dsn = dsn
        self._projections = list(projections)
        self._positions: dict[str, int] = dict.fromkeys(self._projections, 0)
        self._changed = asyncio.Condition()
        self._subscribers: dict[str, set[asyncio.Queue[int]]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def position(self) -> int:
        """The position every read model has reached."""
        return min(self._positions.values()) if self._positions else 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever())

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)

    async def _listen_forever(self) -> None:
        while not self._stopping:
            try:
                self._conn = await asyncpg.connect(self._dsn)
                await self._conn.add_listener(PROJECTED_CHANNEL, self._on_projected)
                await self._conn.add_listener(LIVE_CHANNEL, self._on_live)
                await self._refresh()
                while not self._conn.is_closed():
                    # Polling fallback: a NOTIFY missed during a reconnect is caught up here.
                    await asyncio.sleep(1.0)
                    await self._refresh()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
                log.warning("live listener: %s; reconnecting", exc)
            except Exception:
                # The listener must outlive anything: without it every mutation waits out its read-your-writes bound.
                log.exception("live listener failed; reconnecting")
            await asyncio.sleep(0.5)

    async def _refresh(self) -> None:
        assert self._conn is not None
        rows = await self._conn.fetch(
            "SELECT projection, position FROM parvis.tracking WHERE projection = ANY($1)", self._projections
        )
        for row in rows:
            await self._advance(row["projection"], row["position"])

    async def _advance(self, name: str, position: int) -> None:
        if name in self._positions and position > self._positions[name]:
            self._positions[name] = position
            async with self._changed:
                self._changed.notify_all()

    def _on_projected(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        name, _, position = payload.rpartition(":")
        asyncio.get_running_loop().create_task(self._advance(name, int(position)))

    def _on_live(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        data = json.loads(payload)
        for tenant in data["t"]:
            for queue in self._subscribers.get(tenant, ()):
                queue.put_nowait(int(data["p"]))

    async def wait_for(self, position: int | None, within: float) -> bool:
        """Wait until every read model includes `position`; False when the bounded wait timed out."""
        if position is None or self.position >= position:
            return True
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.position >= position), within)
        except TimeoutError:
            return self.position >= position
        return True

    @contextlib.asynccontextmanager
    async def subscribe(self, tenant: str) -> AsyncIterator[asyncio.Queue[int]]:
        """A queue of positions at which the tenant's read models changed."""
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1000)
        self._subscribers[tenant].add(queue)
        try:
            yield queue
        finally:
            self._subscribers[tenant].discard(queue)
            if not self._subscribers[tenant]:
                del self._subscribers[tenant]


async def follow(ctx: Any, key: str, sql: str, last: int, position: str) -> AsyncIterator[asyncpg.Record]:
    """Rows of a tenant's change feed after `last`, as the projector reaches them (`sql` takes key and last).

    No transaction stays open while the feed waits: each wake-up reads in a session of its own."""
    await ctx.close()
    async with ctx.services.live.subscribe(key) as changes:
        while True:
            await changes.get()
            while not changes.empty():
                changes.get_nowait()
            session = ctx.fresh_db()
            try:
                rows = await session.fetch(sql, key, last)
            finally:
                await session.close()
            for row in rows:
                last = row[position]
                yield row
