"""Credentials: signing out everywhere, changing one's password, the agency's API keys for its servers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from api import ids
from api.access import UserError, actor_of, inherit_permissions, require_agency, secured
from api.auth import api_key_digest, new_api_key
from api.auth import login as check_login
from api.commands import CommandResult, execute
from api.context import Context
from api.directory.queries import me_user
from api.directory.types import Session, User
from api.errors import NotFoundError, Unauthenticated
from api.throttle import login_throttle
from domain.roles import Permission

_KEYS = """
SELECT k.key_id, k.user_id, k.name, k.active, k.created_at, p.email, p.display_name
FROM auth.api_keys k JOIN auth.principals p ON p.user_id = k.user_id
WHERE p.agency_id = $1 {where}
ORDER BY k.created_at DESC, k.key_id
"""


@inherit_permissions
@strawberry.type
class ApiKey:
    """A key an agency's server signs in with (`Authorization: Bearer pvk_...`), acting as one user of the agency
    with that user's roles. Only a digest of its secret is kept."""

    id: strawberry.ID
    name: str
    active: bool
    created_at: datetime
    user: User

    @classmethod
    def from_row(cls, agency_key: str, row: Any) -> ApiKey:
        return cls(
            id=strawberry.ID(ids.encode("ApiKey", f"{agency_key}/apikey/{row['key_id']}")),
            name=row["name"],
            active=row["active"],
            created_at=row["created_at"],
            user=User(id=strawberry.ID(ids.encode("User", row["user_id"])), email=row["email"],
                      display_name=row["display_name"], raw_id=row["user_id"]),
        )


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


@strawberry.input
class IssueApiKeyInput:
    user_id: strawberry.ID
    name: str


@strawberry.input
class RevokeApiKeyInput:
    api_key_id: strawberry.ID
    reason: str | None = None


@inherit_permissions
@strawberry.type
class SignOutPayload:
    user: User | None
    user_errors: list[UserError]
    position: str | None
    consistent: bool


@inherit_permissions
@strawberry.type
class ChangePasswordPayload:
    session: Session | None = strawberry.field(description="A new session: every earlier token is revoked.")
    user_errors: list[UserError]
    position: str | None
    consistent: bool


@inherit_permissions
@strawberry.type
class ApiKeyPayload:
    api_key: ApiKey | None
    secret: str | None = strawberry.field(
        description="The whole key, shown this once (issueApiKey only): Parvis keeps a digest of it, never the key."
    )
    user_errors: list[UserError]
    position: str | None
    consistent: bool


async def _key(ctx: Context, agency_key: str, key_id: str) -> ApiKey | None:
    row = await ctx.db.fetchrow(_KEYS.format(where="AND k.key_id = $2"), agency_key, key_id)
    return ApiKey.from_row(agency_key, row) if row else None


@strawberry.type
class CredentialsQuery:
    @strawberry.field(**secured(Permission.MANAGE_TENANTS))
    async def api_keys(self, info: Info[Context, None]) -> list[ApiKey]:
        """The agency's API keys, active and revoked, newest first (agency admins)."""
        ctx = info.context
        p = await require_agency(ctx, Permission.MANAGE_TENANTS, "apiKeys")
        return [ApiKey.from_row(p.agency_id, r) for r in await ctx.db.fetch(_KEYS.format(where=""), p.agency_id)]


@strawberry.type
class CredentialsMutation:
    @strawberry.mutation(**secured("AUTHENTICATED"))
    async def sign_out(self, info: Info[Context, None]) -> SignOutPayload:
        """Sign the caller out everywhere: every access token issued to them so far is refused from now on
        (open WebSockets at their next credential check). API keys are not tokens: revoke them one by one."""
        ctx = info.context
        p = ctx.require_principal()
        domain = ctx.services.domain
        result = await execute(ctx, operation="signOut", actor=actor_of(p, None),
                               command=lambda: domain.revoke_tokens(p.user_id))
        return SignOutPayload(user=me_user(ctx) if not result.errors else None, user_errors=result.errors,
                              position=result.position_text, consistent=result.consistent)

    @strawberry.mutation(**secured("AUTHENTICATED"))
    async def change_password(self, info: Info[Context, None], input: ChangePasswordInput) -> ChangePasswordPayload:
        """Change the caller's password, given the current one (wrong guesses count as failed logins); every
        earlier access token is revoked and a new session is returned."""
        ctx = info.context
        p = ctx.require_principal()
        try:
            async with login_throttle(ctx, p.email), ctx.services.pool.acquire() as conn:
                checked = await check_login(conn, ctx.services.secrets, p.email, input.current_password)  # type: ignore[arg-type]
                if checked.user_id != p.user_id:
                    raise Unauthenticated("wrong e-mail or password")
        except Unauthenticated:
            wrong = UserError(code="BAD_USER_INPUT", field=["input", "currentPassword"],
                              message="the current password is wrong")
            return ChangePasswordPayload(session=None, user_errors=[wrong], position=None, consistent=True)
        domain = ctx.services.domain
        result = await execute(ctx, operation="changePassword", actor=actor_of(p, None),
                               command=lambda: domain.change_password(p.user_id, input.new_password, "newPassword"))
        session = None
        if not result.errors:
            # Issued after the change is stored: its `iat` follows the revocation the change made.
            token, expires = ctx.services.tokens.issue(p.user_id, p.agency_id)
            session = Session(access_token=token, expires_at=expires, user=me_user(ctx))
        return ChangePasswordPayload(session=session, user_errors=result.errors, position=result.position_text,
                                     consistent=result.consistent)

    @strawberry.mutation(**secured(Permission.MANAGE_TENANTS))
    async def issue_api_key(self, info: Info[Context, None], input: IssueApiKeyInput) -> ApiKeyPayload:
        """A new API key acting as a user of the agency (agency admins). The key is in `secret`, this once; it takes
        no idempotency key, as a replay would have to keep the key: if the answer is lost, revoke the key and issue
        another."""
        ctx = info.context
        p = await require_agency(ctx, Permission.MANAGE_TENANTS, "issueApiKey")
        user_id = ids.raw(input.user_id, "User", "userId")
        if ids.scope(user_id) != p.agency_id:
            raise NotFoundError("no user with this id")
        key_id, secret, whole = new_api_key()
        domain = ctx.services.domain
        result: CommandResult[Any] = await execute(
            ctx, operation="issueApiKey", actor=actor_of(p, None),
            command=lambda: domain.issue_api_key(user_id, key_id, input.name, api_key_digest(secret)),
        )
        if result.errors:
            return ApiKeyPayload(api_key=None, secret=None, user_errors=result.errors, position=result.position_text,
                                 consistent=result.consistent)
        return ApiKeyPayload(api_key=await _key(ctx, p.agency_id, key_id), secret=whole, user_errors=[],
                             position=result.position_text, consistent=result.consistent)

    @strawberry.mutation(**secured(Permission.MANAGE_TENANTS))
    async def revoke_api_key(self, info: Info[Context, None], input: RevokeApiKeyInput) -> ApiKeyPayload:
        """Revoke an API key of the agency (agency admins): it is refused from the moment the change is projected."""
        ctx = info.context
        p = await require_agency(ctx, Permission.MANAGE_TENANTS, "revokeApiKey")
        raw = ids.raw(input.api_key_id, "ApiKey", "apiKeyId")
        if ids.scope(raw) != p.agency_id:
            raise NotFoundError("no API key with this id")
        key_id = raw.rsplit("/", 1)[1]
        domain = ctx.services.domain
        result = await execute(ctx, operation="revokeApiKey", actor=actor_of(p, None, input.reason),
                               command=lambda: domain.revoke_api_key(p.agency_id, key_id))
        return ApiKeyPayload(api_key=await _key(ctx, p.agency_id, key_id) if not result.errors else None,
                             secret=None, user_errors=result.errors, position=result.position_text,
                             consistent=result.consistent)
