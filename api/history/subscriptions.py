"""Live history: every new event of a tenant, as it is projected."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from api.access import require, secured
from api.context import Context
from api.directory.mutations import tenant_key_of
from api.history.types import HistoryEvent
from api.live import follow
from domain.roles import Permission

_NEW_EVENTS = "SELECT * FROM read.history WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000"


@strawberry.type
class HistorySubscription:
    @strawberry.subscription(**secured(Permission.AUDIT))
    async def history(self, info: Info[Context, None], tenant_id: strawberry.ID) -> AsyncGenerator[HistoryEvent, None]:
        ctx = info.context
        key = tenant_key_of(tenant_id)
        await require(ctx, key, Permission.AUDIT, "history")
        last = await ctx.db.fetchval("SELECT coalesce(max(seq), 0) FROM read.history WHERE tenant_id = $1", key)
        async for row in follow(ctx, key, _NEW_EVENTS, last, "seq"):
            yield HistoryEvent.from_row(row)
