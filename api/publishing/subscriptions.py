"""Live posts: every state a post of a tenant goes through, in order, as it is projected."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from api.access import require, secured
from api.context import Context
from api.directory.mutations import tenant_key_of
from api.live import follow
from api.publishing.types import Post
from domain.roles import Permission

_NEW_TRANSITIONS = """
SELECT t.position AS transition_position, t.status AS transition_status, p.* FROM read.post_transitions t
JOIN read.posts p ON p.tenant_id = t.tenant_id AND p.id = t.post_id
WHERE t.tenant_id = $1 AND t.position > $2 ORDER BY t.position LIMIT 1000
"""


@strawberry.type
class PublishingSubscription:
    @strawberry.subscription(**secured(Permission.SEE))
    async def post_updates(self, info: Info[Context, None], tenant_id: strawberry.ID) -> AsyncGenerator[Post, None]:
        """Each state change of a post (a post that went through three states in one batch is sent three times,
        each time with the status of that change)."""
        ctx = info.context
        key = tenant_key_of(tenant_id)
        await require(ctx, key, Permission.SEE, "postUpdates")
        last = await ctx.db.fetchval(
            "SELECT coalesce(max(position), 0) FROM read.post_transitions WHERE tenant_id = $1", key
        )
        async for row in follow(ctx, key, _NEW_TRANSITIONS, last, "transition_position"):
            yield Post.from_row(row, status=row["transition_status"])
            await ctx.close()  # the session that resolved the post's fields; nothing stays open
