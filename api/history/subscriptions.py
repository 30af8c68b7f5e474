"""Live history: every new event of a tenant, as it is projected."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from api.access import require, secured
from api.context import Context
from api.directory.mutations import tenant_key_of
from api.history.types import HistoryEvent
from domain.roles import Permission


@strawberry.type
class HistorySubscription:
    @strawberry.subscription(**secured(Permission.AUDIT))
    async def history(self, info: Info[Context, None], tenant_id: strawberry.ID) -> AsyncGenerator[HistoryEvent, None]:
        ctx = info.context
        key = tenant_key_of(tenant_id)
        await require(ctx, key, Permission.AUDIT, "history")
        last = await ctx.db.fetchval("SELECT coalesce(max(seq), 0) FROM read.history WHERE tenant_id = $1", key)
        await ctx.close()  # no transaction stays open while the subscription waits
        async with ctx.services.live.subscribe(key) as changes:
            while True:
                await changes.get()
                while not changes.empty():
                    changes.get_nowait()
                session = ctx.fresh_db()
                try:
                    rows = await session.fetch(
                        "SELECT * FROM read.history WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000",
                        key,
                        last,
                    )
                finally:
                    await session.close()
                for row in rows:
                    last = row["seq"]
                    yield HistoryEvent.from_row(row)
