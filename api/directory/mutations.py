"""Mutations of the directory: sign-in, tenants, memberships, channels, approval policy."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api import ids
from api.access import UserError, actor_of, inherit_permissions, require, require_agency, secured
from api.auth import login as check_login
from api.commands import CommandResult, execute
from api.context import Context
from api.directory.queries import me_user
from api.directory.types import (
    Channel,
    Membership,
    Platform,
    Role,
    Session,
    Tenant,
    TenantKind,
    TenantStatus,
    load_tenant,
)
from api.errors import Forbidden, NotFoundError
from api.throttle import login_throttle
from domain.roles import Permission
from domain.roles import Role as DomainRole


@strawberry.input
class CreateTenantInput:
    name: str
    kind: TenantKind  # type: ignore[valid-type]
    timezone: str
    locale: str | None = "fr-FR"
    idempotency_key: str | None = None


@strawberry.input
class UpdateTenantInput:
    tenant_id: strawberry.ID
    name: str | None = None
    timezone: str | None = None
    status: TenantStatus | None = None  # type: ignore[valid-type]
    reason: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class GrantMembershipInput:
    email: str
    role: Role  # type: ignore[valid-type]
    display_name: str | None = None
    tenant_id: strawberry.ID | None = None
    password: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class RevokeMembershipInput:
    user_id: strawberry.ID
    role: Role  # type: ignore[valid-type]
    tenant_id: strawberry.ID | None = None
    reason: str | None = None


@strawberry.input
class ConnectChannelInput:
    tenant_id: strawberry.ID
    platform: Platform  # type: ignore[valid-type]
    handle: str
    mission: str | None = None
    credentials: JSON | None = None
    idempotency_key: str | None = None


@strawberry.input
class SetApprovalPolicyInput:
    tenant_id: strawberry.ID
    internal_approvals: int
    client_approval: bool
    expires_after_hours: int | None = None
    reason: str | None = None


@inherit_permissions
@strawberry.type
class TenantPayload:
    tenant: Tenant | None
    user_errors: list[UserError]
    position: str | None
    consistent: bool


@inherit_permissions
@strawberry.type
class MembershipPayload:
    membership: Membership | None
    user_errors: list[UserError]
    position: str | None
    consistent: bool


@inherit_permissions
@strawberry.type
class ChannelPayload:
    channel: Channel | None
    user_errors: list[UserError]
    position: str | None
    consistent: bool


def tenant_key_of(value: str, field: str = "tenantId") -> str:
    return ids.raw(value, "Tenant", field)


async def tenant_payload(ctx: Context, result: CommandResult[Any], key: str | None) -> TenantPayload:
    tenant = await load_tenant(ctx, key) if key and not result.errors else None
    return TenantPayload(
        tenant=tenant, user_errors=result.errors, position=result.position_text, consistent=result.consistent
    )


def _plain(data: Any) -> dict[str, Any]:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in vars(data).items()}


@strawberry.type
class DirectoryMutation:
    @strawberry.mutation(**secured("ANONYMOUS", anonymous=True))
    async def login(self, info: Info[Context, None], email: str, password: str) -> Session:
        ctx = info.context
        async with login_throttle(ctx, email), ctx.services.pool.acquire() as conn:
            principal = await check_login(conn, ctx.services.secrets, email, password)  # type: ignore[arg-type]
        token, expires = ctx.services.tokens.issue(principal.user_id, principal.agency_id)
        ctx.principal = principal
        return Session(access_token=token, expires_at=expires, user=me_user(ctx))

    @strawberry.mutation(**secured(Permission.MANAGE_TENANTS))
    async def create_tenant(self, info: Info[Context, None], input: CreateTenantInput) -> TenantPayload:
        ctx = info.context
        p = await require_agency(ctx, Permission.MANAGE_TENANTS, "createTenant")
        domain = ctx.services.domain
        result = await execute(
            ctx,
            operation="createTenant",
            actor=actor_of(p, None),
            idempotency_key=input.idempotency_key,
            input_data=_plain(input) | {"idempotency_key": None},
            command=lambda: domain.create_tenant(
                p.agency_id, input.name, input.kind.value, input.timezone, input.locale or "fr-FR"
            ),
        )
        return await tenant_payload(ctx, result, result.value)

    @strawberry.mutation(**secured(Permission.MANAGE_TENANTS))
    async def update_tenant(self, info: Info[Context, None], input: UpdateTenantInput) -> TenantPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.MANAGE_TENANTS, "updateTenant")
        domain = ctx.services.domain
        result = await execute(
            ctx,
            operation="updateTenant",
            actor=actor_of(p, key, input.reason),
            idempotency_key=input.idempotency_key,
            input_data=_plain(input) | {"idempotency_key": None},
            command=lambda: domain.update_tenant(
                key, input.name, input.timezone, input.status.value if input.status else None
            ),
        )
        return await tenant_payload(ctx, result, key)

    @strawberry.mutation(**secured(Permission.REVISE_STRATEGY))
    async def set_approval_policy(self, info: Info[Context, None], input: SetApprovalPolicyInput) -> TenantPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.REVISE_STRATEGY, "setApprovalPolicy")
        domain = ctx.services.domain
        result = await execute(
            ctx,
            operation="setApprovalPolicy",
            actor=actor_of(p, key, input.reason),
            input_data=_plain(input),
            command=lambda: domain.set_approval_policy(
                key, input.internal_approvals, input.client_approval, input.expires_after_hours
            ),
        )
        return await tenant_payload(ctx, result, key)

    @strawberry.mutation(**secured(Permission.MANAGE_CLIENT_USERS))
    async def grant_membership(self, info: Info[Context, None], input: GrantMembershipInput) -> MembershipPayload:
        ctx = info.context
        role = DomainRole(input.role.value)
        key = tenant_key_of(input.tenant_id) if input.tenant_id else None
        p = await _require_people_admin(ctx, key, role, "grantMembership")
        domain = ctx.services.domain
        result = await execute(
            ctx,
            operation="grantMembership",
            actor=actor_of(p, key),
            idempotency_key=input.idempotency_key,
            input_data=_plain(input) | {"idempotency_key": None, "password": None},
            command=lambda: domain.grant_membership(
                p.agency_id, input.email, role.value, key, input.display_name, input.password
            ),
        )
        membership = None
        if result.value and not result.errors:
            row = await ctx.db.fetchrow(
                "SELECT * FROM read.memberships WHERE tenant_id = $1 AND id = $2", key or p.agency_id, result.value[1]
            )
            membership = Membership.from_row(row) if row else None
        return MembershipPayload(
            membership=membership,
            user_errors=result.errors,
            position=result.position_text,
            consistent=result.consistent,
        )

    @strawberry.mutation(**secured(Permission.MANAGE_CLIENT_USERS))
    async def revoke_membership(self, info: Info[Context, None], input: RevokeMembershipInput) -> MembershipPayload:
        ctx = info.context
        role = DomainRole(input.role.value)
        key = tenant_key_of(input.tenant_id) if input.tenant_id else None
        user_id = ids.raw(input.user_id, "User", "userId")
        p = await _require_people_admin(ctx, key, role, "revokeMembership")
        if ids.scope(user_id) != p.agency_id:
            raise NotFoundError("no user with this id")
        domain = ctx.services.domain
        result = await execute(
            ctx,
            operation="revokeMembership",
            actor=actor_of(p, key, input.reason),
            input_data=_plain(input),
            command=lambda: domain.revoke_membership(user_id, role.value, key or p.agency_id),
        )
        membership = None
        if result.value and not result.errors:
            row = await ctx.db.fetchrow(
                "SELECT * FROM read.memberships WHERE tenant_id = $1 AND id = $2", key or p.agency_id, result.value
            )
            membership = Membership.from_row(row) if row else None
        return MembershipPayload(
            membership=membership,
            user_errors=result.errors,
            position=result.position_text,
            consistent=result.consistent,
        )

    @strawberry.mutation(**secured(Permission.REVISE_STRATEGY))
    async def connect_channel(self, info: Info[Context, None], input: ConnectChannelInput) -> ChannelPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.REVISE_STRATEGY, "connectChannel")
        if input.credentials is not None and not isinstance(input.credentials, dict):
            return ChannelPayload(
                channel=None,
                position=None,
                consistent=True,
                user_errors=[
                    UserError(
                        code="BAD_USER_INPUT",
                        field=["input", "credentials"],
                        message="credentials must be a JSON object",
                    )
                ],
            )
        domain = ctx.services.domain
        result = await execute(
            ctx,
            operation="connectChannel",
            actor=actor_of(p, key),
            idempotency_key=input.idempotency_key,
            input_data=_plain(input) | {"idempotency_key": None, "credentials": bool(input.credentials)},
            command=lambda: domain.connect_channel(
                key, input.platform.value, input.handle, input.mission, input.credentials
            ),
        )
        channel = None
        if result.value and not result.errors:
            row = await ctx.db.fetchrow(
                "SELECT * FROM read.channels WHERE tenant_id = $1 AND id = $2", key, result.value
            )
            channel = Channel.from_row(row) if row else None
        return ChannelPayload(
            channel=channel, user_errors=result.errors, position=result.position_text, consistent=result.consistent
        )


async def _require_people_admin(ctx: Context, key: str | None, role: DomainRole, operation: str) -> Any:
    """Agency admins manage everyone; client admins manage client roles on their own tenant only."""
    if key is None:
        return await require_agency(ctx, Permission.MANAGE_TENANTS, operation)
    p = await require(ctx, key, Permission.MANAGE_CLIENT_USERS, operation)
    if not p.can(Permission.MANAGE_TENANTS, key) and not role.is_client:
        raise Forbidden("client admins may only grant client roles")
    return p
