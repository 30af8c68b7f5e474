"""Principals, access tokens (JWT HS256) and API keys."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import jwt

from api.errors import Unauthenticated
from domain.roles import Permission, Role, allows


class SecretOpener(Protocol):
    def verify_password(self, sealed_hash: str | None, password: str) -> bool: ...


@dataclass(frozen=True)
class Grant:
    role: Role
    scope: str
    tenant_key: str | None  # None: agency-wide


@dataclass
class Principal:
    """The authenticated caller and every role they hold."""

    user_id: str
    agency_id: str
    agency_name: str
    email: str
    display_name: str
    grants: list[Grant] = field(default_factory=list)
    via: str = "token"
    # When the access token expires (seconds since the epoch); None for API keys and passwords.
    expires_at: float | None = None

    @property
    def agency_wide(self) -> list[Grant]:
        return [g for g in self.grants if g.tenant_key is None]

    @property
    def tenant_keys(self) -> list[str]:
        return sorted({g.tenant_key for g in self.grants if g.tenant_key})

    def roles_on(self, tenant_key: str) -> set[Role]:
        """Roles that apply to a tenant of this principal's agency (its tenancy is checked by the caller)."""
        return {g.role for g in self.grants if g.tenant_key in (None, tenant_key)}

    def can(self, permission: Permission, tenant_key: str) -> bool:
        return any(allows(role, permission) for role in self.roles_on(tenant_key))

    def can_agency(self, permission: Permission) -> bool:
        return any(allows(g.role, permission) for g in self.agency_wide)

    def best_role(self, tenant_key: str | None) -> Role | None:
        roles = self.roles_on(tenant_key) if tenant_key else {g.role for g in self.agency_wide}
        order = list(Role)
        return min(roles, key=order.index) if roles else None


class Tokens:
    """Issues and verifies short-lived access tokens.

    Only HS256 with the server's key is accepted: `alg: none`, other algorithms (RS256, HS512, ...) and tokens
    signed with any other key are refused by the allow-list given to `jwt.decode`."""

    ALGORITHM = "HS256"

    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self._key = key
        self.ttl = ttl_seconds

    def issue(self, user_id: str, agency_id: str) -> tuple[str, datetime]:
        # `iat` keeps milliseconds (rounded down, never in the future), so that a revocation in the same second
        # as an issue is ordered right.
        now = math.floor(time.time() * 1000) / 1000
        exp = int(now) + self.ttl
        claims = {"sub": user_id, "agy": agency_id, "iat": now, "exp": exp, "jti": uuid.uuid4().hex, "typ": "access"}
        return jwt.encode(claims, self._key, algorithm=self.ALGORITHM), datetime.fromtimestamp(exp, UTC)

    def verify(self, token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token, self._key, algorithms=[self.ALGORITHM], options={"require": ["sub", "exp", "iat", "typ"]}
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the access token has expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("the access token is not valid") from None
        if claims.get("typ") != "access":
            raise Unauthenticated("the access token is not valid")
        return claims


API_KEY_PREFIX = "pvk_"


def new_api_key() -> tuple[str, str, str]:
    """(key id, secret, the full key to hand over once)."""
    key_id = uuid.uuid4().hex
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{API_KEY_PREFIX}{key_id}.{secret}"


_PRINCIPAL_SQL = """
SELECT p.user_id, p.agency_id, p.email, p.display_name, p.password, p.tokens_valid_after,
       coalesce(a.name, '') AS agency_name,
       coalesce(json_agg(json_build_array(g.role, g.scope, g.tenant_key)) FILTER (WHERE g.active), '[]') AS grants
FROM auth.principals p
LEFT JOIN auth.agencies a ON a.agency_id = p.agency_id
LEFT JOIN auth.grants g ON g.user_id = p.user_id
WHERE {where}
GROUP BY p.user_id, a.name
"""


def _principal(row: asyncpg.Record, via: str) -> Principal:
    grants = [Grant(Role(r), s, t) for r, s, t in json.loads(row["grants"])]
    return Principal(
        user_id=row["user_id"],
        agency_id=row["agency_id"],
        agency_name=row["agency_name"],
        email=row["email"],
        display_name=row["display_name"],
        grants=grants,
        via=via,
    )


async def principal_from_token(conn: asyncpg.Connection, tokens: Tokens, token: str) -> Principal:
    """The principal behind a bearer value: an API key or an access token."""
    if token.startswith(API_KEY_PREFIX):
        return await _from_api_key(conn, token)
    claims = tokens.verify(token)
    row = await conn.fetchrow(_PRINCIPAL_SQL.format(where="p.user_id = $1"), claims["sub"])
    if row is None:
        raise Unauthenticated("the access token is not valid")
    if claims["iat"] < row["tokens_valid_after"].timestamp():
        raise Unauthenticated("the access token was revoked")
    principal = _principal(row, "token")
    principal.expires_at = float(claims["exp"])
    return principal


async def _from_api_key(conn: asyncpg.Connection, value: str) -> Principal:
    key_id, _, secret = value[len(API_KEY_PREFIX) :].partition(".")
    row = await conn.fetchrow("SELECT user_id, digest FROM auth.api_keys WHERE key_id = $1 AND active", key_id)
    if row is None or not hmac.compare_digest(row["digest"], api_key_digest(secret)):
        raise Unauthenticated("the API key is not valid")
    principal = await conn.fetchrow(_PRINCIPAL_SQL.format(where="p.user_id = $1"), row["user_id"])
    if principal is None:
        raise Unauthenticated("the API key is not valid")
    return _principal(principal, "api_key")


def api_key_digest(secret: str) -> str:
    """What is stored of an API key's secret (high entropy: a plain digest suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


async def login(conn: asyncpg.Connection, opener: SecretOpener, email: str, password: str) -> Principal:
    """Check an e-mail and password; the same answer for an unknown e-mail and a wrong password."""
    rows = await conn.fetch(_PRINCIPAL_SQL.format(where="p.email = $1"), email.strip().lower())
    for row in rows:
        if opener.verify_password(row["password"], password):
            return _principal(row, "password")
    if not rows:
        # Spend the same time as a real check, so that timing does not reveal unknown addresses.
        opener.verify_password(None, password)
    raise Unauthenticated("wrong e-mail or password")
