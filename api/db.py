"""Read sessions: one transaction per request, as the app role, scoped to the caller's tenants."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg

from api.auth import Principal

_KEY = re.compile(r"^[0-9a-f]{32}$")


def scope_settings(principal: Principal | None, *, tenants: list[str] | None = None) -> tuple[str, str]:
    """(parvis.tenants, parvis.agency) for row-level security; nothing visible without a principal."""
    if principal is None:
        return "", ""
    keys = tenants if tenants is not None else principal.tenant_keys
    keys = [k for k in keys if _KEY.match(k)]
    agency = principal.agency_id if principal.agency_wide else ""
    return ",".join(keys), agency


class ReadSession:
    """Serialises a request's queries on one connection, inside one transaction with the RLS scope set."""

    def __init__(self, pool: asyncpg.Pool, principal: Principal | None) -> None:
        self._pool = pool
        self._principal = principal
        self._conn: asyncpg.Connection | None = None
        self._tx: asyncpg.transaction.Transaction | None = None
        self._lock = asyncio.Lock()
        self.queries = 0

    async def _ensure(self) -> asyncpg.Connection:
        if self._conn is None:
            conn = await self._pool.acquire()
            try:
                tx = conn.transaction(readonly=True)
                await tx.start()
                tenants, agency = scope_settings(self._principal)
                await conn.execute(
                    "SELECT set_config('parvis.tenants', $1, true), set_config('parvis.agency', $2, true)",
                    tenants,
                    agency,
                )
            except BaseException:
                await self._pool.release(conn)
                raise
            self._conn, self._tx = conn, tx
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
            try:
                await tx.rollback()  # read-only: nothing to commit
            finally:
                await self._pool.release(conn)
