"""Queries of the directory: me, agency, tenants, tenant, node."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.types import Info

from api import ids
from api.access import secured
from api.context import Context
from api.directory.types import (
    Agency,
    Channel,
    Membership,
    Node,
    Tenant,
    TenantConnection,
    TenantEdge,
    User,
    load_tenant,
)
from api.errors import BadInput, NotFoundError
from api.pagination import Keyset, decode_cursor, page_size
from domain.roles import Permission


def me_user(ctx: Context) -> User:
    p = ctx.require_principal()
    return User(
        id=strawberry.ID(ids.encode("User", p.user_id)), email=p.email, display_name=p.display_name, raw_id=p.user_id
    )


_TENANTS = Keyset("read.tenants", id_column="tenant_id")


@strawberry.type
class DirectoryQuery:
    @strawberry.field(**secured("AUTHENTICATED"))
    def me(self, info: Info[Context, None]) -> User:
        return me_user(info.context)

    @strawberry.field(**secured("AUTHENTICATED"))
    def agency(self, info: Info[Context, None]) -> Agency:
        p = info.context.require_principal()
        return Agency(id=strawberry.ID(ids.encode("Agency", p.agency_id)), name=p.agency_name)

    @strawberry.field(**secured(Permission.SEE))
    async def tenants(
        self, info: Info[Context, None], first: int | None = 20, after: str | None = None, search: str | None = None
    ) -> TenantConnection:
        ctx = info.context
        p = ctx.require_principal()
        page_size(first)  # a bad `first` or cursor is refused before anything is read
        decode_cursor(after)
        if search is not None and len(search) > 200:
            raise BadInput("search must be at most 200 characters")
        where = ["true"]
        args: list[Any] = []
        if ctx.services.config.resolver_filters:
            args.append(p.agency_id)
            where.append(f"agency_id = ${len(args)}")
            if not p.agency_wide:
                args.append(p.tenant_keys)
                where.append(f"tenant_id = ANY(${len(args)})")
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args.append(f"%{escaped}%")
            where.append(f"name ILIKE ${len(args)}")
        total = await ctx.db.fetchval(f"SELECT count(*) FROM read.tenants WHERE {' AND '.join(where)}", *args)
        rows, info = await _TENANTS.page(ctx.db, where, args, first, after)
        return TenantConnection(
            edges=[TenantEdge(cursor=_TENANTS.cursor(r), node=Tenant.from_row(r)) for r in rows],
            page_info=info,
            total_count=int(total or 0),
        )

    @strawberry.field(**secured(Permission.SEE))
    async def tenant(self, info: Info[Context, None], id: strawberry.ID) -> Tenant | None:
        try:
            key = ids.raw(id, "Tenant")
        except NotFoundError:
            return None
        return await load_tenant(info.context, key)

    @strawberry.field(**secured(Permission.SEE))
    async def node(self, info: Info[Context, None], id: strawberry.ID) -> Node | None:
        ctx = info.context
        p = ctx.require_principal()
        try:
            type_name, raw = ids.decode(id)
        except NotFoundError:
            return None
        if type_name == "Tenant":
            return await load_tenant(ctx, raw)
        if type_name == "Agency":
            return Agency(id=id, name=p.agency_name) if raw == p.agency_id else None
        if type_name == "User":
            if raw == p.user_id:
                return me_user(ctx)
            row = await ctx.db.fetchrow("SELECT * FROM read.memberships WHERE user_id = $1 LIMIT 1", raw)
            return Membership.from_row(row).user() if row else None
        if type_name == "Channel":
            tenant = await load_tenant(ctx, ids.scope(raw))
            if tenant is None:
                return None
            row = await ctx.db.fetchrow("SELECT * FROM read.channels WHERE tenant_id = $1 AND id = $2", tenant.key, raw)
            return Channel.from_row(row) if row else None
        if type_name == "Report":
            from api.reports.queries import report

            return await report(ctx, ids.scope(raw), raw) if await load_tenant(ctx, ids.scope(raw)) else None
        if type_name in _TENANT_OBJECTS:
            from api.publishing.types import Campaign, Post

            if await load_tenant(ctx, ids.scope(raw)) is None:
                return None
            from api.moderation.types import Interaction

            table = _TENANT_OBJECTS[type_name]
            kind = {"Post": Post, "Campaign": Campaign, "Interaction": Interaction}[type_name]
            row = await ctx.db.fetchrow(f"SELECT * FROM {table} WHERE tenant_id = $1 AND id = $2", ids.scope(raw), raw)
            return kind.from_row(row) if row else None  # type: ignore[attr-defined, no-any-return]
        return None


# Objects of a tenant that `node` resolves from their read-model table.
_TENANT_OBJECTS = {"Post": "read.posts", "Campaign": "read.campaigns", "Interaction": "read.interactions"}
