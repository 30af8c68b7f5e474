"""Read sessions: one transaction per request, as the app role, scoped to the caller's tenants."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import Counter

from api.auth import Principal

log = logging.getLogger("parvis.api.db")

READS = Counter(
    "parvis_read_sessions",
    "Read sessions by the database that answered them: the replica, or the primary and why",
    ["database", "reason"],
)

_KEY = re.compile(r"^[0-9a-f]{32}$")


def scope_settings(principal: Principal | None, *, tenants: list[str] | None = None) -> tuple[str, str]:
    """(parvis.tenants, parvis.agency) for row-level security; nothing visible without a principal."""
    if principal is None:
        return "", ""
    keys = tenants if tenants is not None else principal.tenant_keys
    keys = [k for k in keys if _KEY.match(k)]
    agency = principal.agency_id if principal.agency_wide else ""
    return ",".join(keys), agency


async def _open(pool: asyncpg.Pool, principal: Principal | None) -> tuple[asyncpg.Connection, Any]:
    """A connection of `pool` inside a read-only transaction with the caller's RLS scope set."""
    conn = await pool.acquire()
    try:
        tx = conn.transaction(readonly=True)
        await tx.start()
        tenants, agency = scope_settings(principal)
        await conn.execute(
            "SELECT set_config('parvis.tenants', $1, true), set_config('parvis.agency', $2, true)", tenants, agency
        )
    except BaseException:
        await pool.release(conn)
        raise
    return conn, tx


class Replica:
    """A read replica (PARVIS_READ_DATABASE_URL) that answers only when its read models include what the caller must
    see: the position every read model has reached on the replica is read in the session's own transaction, before
    any answer, and compared with the position required (the caller's last write, or what the client asks for)."""

    # On a hot standby the tracking rows arrive with the read-model rows of the same transaction, so this position
    # is exact for the snapshot that answers.
    _REACHED = "SELECT count(*) AS n, coalesce(min(position), 0) AS at FROM parvis.tracking WHERE projection = ANY($1)"

    def __init__(self, pool: asyncpg.Pool, read_models: Sequence[str]) -> None:
        self.pool = pool
        self._read_models = list(read_models)

    async def open(self, principal: Principal | None, required: int | None) -> tuple[asyncpg.Connection, Any] | None:
        """A session on the replica, or None (then the primary answers): the required position is unknown, the
        replica is behind it, or the replica cannot be reached."""
        if required is None:
            READS.labels("primary", "unknown position").inc()
            return None
        try:
            conn, tx = await _open(self.pool, principal)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("read replica unreachable, reading from the primary: %s", type(exc).__name__)
            READS.labels("primary", "replica unreachable").inc()
            return None
        try:
            if required > 0:
                reached = await conn.fetchrow(self._REACHED, self._read_models)
                if reached is None or reached["n"] < len(self._read_models) or reached["at"] < required:
                    READS.labels("primary", "replica behind").inc()
                    await _discard(self.pool, conn, tx)
                    return None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            READS.labels("primary", "replica unreachable").inc()
            await _discard(self.pool, conn, tx)
            return None
        READS.labels("replica", "caught up").inc()
        return conn, tx


async def _discard(pool: asyncpg.Pool, conn: asyncpg.Connection, tx: Any) -> None:
    try:
        # The connection may have died under the request (PostgreSQL restarted): then there is nothing to roll back,
        # the pool replaces it, and the request's own outcome (or error) stands.
        with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
            await tx.rollback()  # read-only: nothing to commit
    finally:
        await pool.release(conn)


class WritePositions:
    """Each user's last write position, in Redis (shared by every API process), so that a read after a write goes
    where that write can be seen. Kept an hour: a replica further behind than that is out of service anyway."""

    TTL = 3600
    _RAISE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._raise = client.register_script(self._RAISE)

    def _key(self, user_id: str) -> str:
        return f"{self._namespace}:last-write:{user_id}"

    async def record(self, user_id: str, position: int) -> None:
        try:
            await self._raise(keys=[self._key(user_id)], args=[position, self.TTL])
        except (aioredis.RedisError, OSError) as exc:
            log.warning("could not record a write position: %s", type(exc).__name__)

    async def last(self, user_id: str) -> int | None:
        """The user's last write position (0: none known); None when Redis cannot tell."""
        try:
            value = await self._client.get(self._key(user_id))
        except (aioredis.RedisError, OSError):
            return None
        return int(value) if value is not None else 0


class ReadSession:
    """Serialises a request's queries on one connection, inside one transaction with the RLS scope set.

    With a replica, the session opens there when the replica has reached the position `required()` returns, and on
    the primary otherwise."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        principal: Principal | None,
        replica: Replica | None = None,
        required: Callable[[], Awaitable[int | None]] | None = None,
    ) -> None:
        self._pool = pool
        self._principal = principal
        self._replica = replica
        self._required = required
        self._conn: asyncpg.Connection | None = None
        self._tx: asyncpg.transaction.Transaction | None = None
        self._owner: asyncpg.Pool = pool
        self._lock = asyncio.Lock()
        self.queries = 0

    @property
    def on_replica(self) -> bool:
        return self._conn is not None and self._replica is not None and self._owner is self._replica.pool

    async def _ensure(self) -> asyncpg.Connection:
        if self._conn is None:
            opened = None
            if self._replica is not None:
                required = await self._required() if self._required is not None else 0
                opened = await self._replica.open(self._principal, required)
                self._owner = self._replica.pool if opened is not None else self._pool
            if opened is None:
                opened = await _open(self._pool, self._principal)
            self._conn, self._tx = opened
        return self._conn

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._lock:
            conn = await self._ensure()
            self.queries += 1
            return await conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return row[0] if row else None

    async def close(self) -> None:
        async with self._lock:
            conn, tx = self._conn, self._tx
            self._conn = self._tx = None
            if conn is None or tx is None:
                return
            await _discard(self._owner, conn, tx)
