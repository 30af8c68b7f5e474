"""Deny by default: who may see and do what on which tenant, checked in every resolver."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.permission import BasePermission
from strawberry.types import Info

from api.auth import Principal
from api.context import Context
from api.errors import Forbidden, NotFoundError
from domain.context import Actor, acting_as
from domain.roles import Permission

# Field metadata key that the schema walk checks on every field.
PERMISSION = "permission"
# For fields of object types: visible to whoever may see the object that holds them.
INHERITED = "inherited"


class Authenticated(BasePermission):
    """The caller has signed in (access token or API key)."""

    message = "sign in first: send 'Authorization: Bearer <token>'"
    error_extensions = {"code": "UNAUTHENTICATED"}

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return info.context.principal is not None


class Anyone(BasePermission):
    """Open to anonymous callers (sign-in only)."""

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return True


_TENANT_PERMISSIONS: dict[Permission, type[BasePermission]] = {}


def on_tenant(permission: Permission) -> type[BasePermission]:
    """A permission class for fields of Tenant: the caller's role on that tenant must allow `permission`."""
    if permission not in _TENANT_PERMISSIONS:

        class OnTenant(BasePermission):
            message = f"your role does not allow '{permission.value}' on this tenant"
            error_extensions = {"code": "FORBIDDEN"}

            async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
                ctx: Context = info.context
                if ctx.principal is None:
                    return False
                if ctx.principal.can(permission, source.key):
                    return True
                await record_denial(ctx, source.key, f"Tenant.{info.field_name}", permission)
                return False

        OnTenant.__name__ = f"OnTenant{permission.name.title().replace('_', '')}"
        _TENANT_PERMISSIONS[permission] = OnTenant
    return _TENANT_PERMISSIONS[permission]


def secured(permission: Permission | str, *, anonymous: bool = False, tenant_field: bool = False) -> dict[str, Any]:
    """Keyword arguments for strawberry.field/mutation/subscription declaring the field's permission.

    `tenant_field`: the field belongs to Tenant and the permission is checked on that tenant at run time.
    """
    name = permission.name if isinstance(permission, Permission) else permission
    classes: list[type[BasePermission]] = [Anyone if anonymous else Authenticated]
    if tenant_field:
        assert isinstance(permission, Permission)
        classes.append(on_tenant(permission))
    return {"permission_classes": classes, "metadata": {PERMISSION: name}}


def inherit_permissions(cls: type) -> type:
    """Mark every field of a type without its own permission as inheriting its parent's."""
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    for f in definition.fields:
        if PERMISSION not in (f.metadata or {}):
            f.metadata = {**(f.metadata or {}), PERMISSION: INHERITED}
    return cls


async def visible_tenant(ctx: Context, tenant_key: str) -> bool:
    """Whether the tenant exists and the caller may see it (the RLS scope decides too)."""
    principal = ctx.require_principal()
    if not ctx.services.config.resolver_filters:
        return await ctx.db.fetchval("SELECT 1 FROM read.tenants WHERE tenant_id = $1", tenant_key) is not None
    if not principal.roles_on(tenant_key) and not principal.agency_wide:
        return False
    row = await ctx.db.fetchval(
        "SELECT 1 FROM read.tenants WHERE tenant_id = $1 AND agency_id = $2", tenant_key, principal.agency_id
    )
    return row is not None


async def require(ctx: Context, tenant_key: str, permission: Permission, operation: str) -> Principal:
    """Refuse unless the caller may do `permission` on the tenant: NOT_FOUND if it is not theirs to see,
    FORBIDDEN (recorded as AccessDenied in the tenant's history) if their role does not allow it."""
    principal = ctx.require_principal()
    if not await visible_tenant(ctx, tenant_key):
        raise NotFoundError("no tenant with this id")
    if not principal.can(permission, tenant_key):
        await record_denial(ctx, tenant_key, operation, permission)
        raise Forbidden(f"your role does not allow '{permission.value}' on this tenant")
    return principal


async def require_agency(ctx: Context, permission: Permission, operation: str) -> Principal:
    """Refuse unless an agency-wide role of the caller allows `permission`."""
    principal = ctx.require_principal()
    if not principal.can_agency(permission):
        await record_denial(ctx, principal.agency_id, operation, permission)
        raise Forbidden(f"your role does not allow '{permission.value}' for the agency")
    return principal


async def record_denial(ctx: Context, scope: str, operation: str, permission: Permission) -> None:
    principal = ctx.principal
    role = principal.best_role(scope) if principal else None
    actor = actor_of(principal, scope) if principal else Actor(id="anonymous")
    with acting_as(actor):
        await ctx.services.call(
            ctx.services.domain.record_access_denied,
            scope,
            operation,
            principal.user_id if principal else None,
            role.value if role else None,
            permission.name,
        )


def actor_of(principal: Principal, tenant_key: str | None, reason: str | None = None) -> Actor:
    """The actor stamped on events: the user, their role there, and on whose behalf agency staff act."""
    role = principal.best_role(tenant_key)
    on_behalf = tenant_key if tenant_key and role is not None and role.is_agency_staff else None
    return Actor(id=principal.user_id, role=role.value if role else None, on_behalf_of=on_behalf, reason=reason)


@inherit_permissions
@strawberry.type
class UserError:
    code: str
    field: list[str] | None
    message: str
