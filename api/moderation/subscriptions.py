"""Live moderation queue: every interaction of a tenant that arrives or changes, as it is projected."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from api.access import require, secured
from api.context import Context
from api.directory.mutations import tenant_key_of
from api.live import follow
from api.moderation.types import Interaction
from domain.roles import Permission

# Each interaction that changed since `last`, once, as it is now (several changes in one batch make one message).
_CHANGED = """
SELECT max(c.position) AS change_position, i.* FROM read.interaction_changes c
JOIN read.interactions i ON i.tenant_id = c.tenant_id AND i.id = c.interaction_id
WHERE c.tenant_id = $1 AND c.position > $2 GROUP BY i.tenant_id, i.id ORDER BY change_position LIMIT 1000
"""


@strawberry.type
class ModerationSubscription:
    @strawberry.subscription(**secured(Permission.SEE))
    async def moderation_queue(
        self, info: Info[Context, None], tenant_id: strawberry.ID
    ) -> AsyncGenerator[Interaction, None]:
        ctx = info.context
        key = tenant_key_of(tenant_id)
        await require(ctx, key, Permission.SEE, "moderationQueue")
        last = await ctx.db.fetchval(
            "SELECT coalesce(max(position), 0) FROM read.interaction_changes WHERE tenant_id = $1", key
        )
        async for row in follow(ctx, key, _CHANGED, last, "change_position"):
            yield Interaction.from_row(row)
            await ctx.close()
