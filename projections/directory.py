"""Read models of agencies, tenants, channels, people and memberships, and the sign-in directory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from projections.base import Envelope, Projection, dumps


class Directory(Projection):
    """Who and what exists: the agency, its tenants and channels, its people and their roles."""

    name = "directory"
    version = 3
    tables = {
        "agencies": "read.agencies",
        "tenants": "read.tenants",
        "channels": "read.channels",
        "memberships": "read.memberships",
        "principals": "auth.principals",
        "grants": "auth.grants",
        "api_keys": "auth.api_keys",
        "agency_names": "auth.agencies",
    }

    def ddl(self, t: Mapping[str, str]) -> str:
        return f"""
CREATE TABLE {t["agencies"]} (
    tenant_id text PRIMARY KEY, agency_id text NOT NULL, name text NOT NULL,
    primary_color text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE {t["tenants"]} (
    tenant_id text PRIMARY KEY, agency_id text NOT NULL, name text NOT NULL, kind text NOT NULL,
    timezone text NOT NULL, locale text NOT NULL, status text NOT NULL,
    approval_internal int NOT NULL DEFAULT 1, approval_client boolean NOT NULL DEFAULT false,
    approval_expires_hours int, approval_version int NOT NULL DEFAULT 0,
    crisis_since timestamptz, crisis_reason text, crisis_by text,
    crisis_suggested_at timestamptz, crisis_suggestion jsonb,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version bigint NOT NULL);
CREATE INDEX ON {t["tenants"]} (agency_id, created_at, tenant_id);
CREATE TABLE {t["channels"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, id text NOT NULL, platform text NOT NULL,
    handle text NOT NULL, mission text, connector text NOT NULL, health text NOT NULL,
    health_detail text, connected boolean NOT NULL, created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id));
CREATE TABLE {t["memberships"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, id text NOT NULL, user_id text NOT NULL,
    role text NOT NULL, agency_wide boolean NOT NULL, user_email text NOT NULL,
    user_display_name text NOT NULL, active boolean NOT NULL, granted_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id));
CREATE INDEX ON {t["memberships"]} (tenant_id, user_id);
CREATE TABLE {t["principals"]} (
    user_id text PRIMARY KEY, agency_id text NOT NULL, email text NOT NULL, display_name text NOT NULL,
    password text, tokens_valid_after timestamptz NOT NULL);
CREATE INDEX ON {t["principals"]} (email);
CREATE TABLE {t["grants"]} (
    user_id text NOT NULL, role text NOT NULL, scope text NOT NULL, tenant_key text,
    agency_id text NOT NULL, active boolean NOT NULL, PRIMARY KEY (user_id, role, scope));
CREATE TABLE {t["api_keys"]} (
    key_id text PRIMARY KEY, user_id text NOT NULL, name text NOT NULL, digest text NOT NULL,
    active boolean NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE {t["agency_names"]} (agency_id text PRIMARY KEY, name text NOT NULL, primary_color text NOT NULL);
GRANT SELECT ON {t["principals"]}, {t["grants"]}, {t["api_keys"]}, {t["agency_names"]} TO parvis_app;
"""

    async def apply(self, conn: asyncpg.Connection, t: Mapping[str, str], batch: Sequence[Envelope]) -> set[str]:
        touched: set[str] = set()
        for env in batch:
            handler = getattr(self, f"_{env.aggregate_type}_{env.event_type}", None)
            if handler is not None:
                await handler(conn, t, env)
                touched.add(env.scope)
        return touched

    # ---------------------------------------------------------------- agency
    async def _Agency_Registered(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        e = env.e
        await conn.execute(
            f"INSERT INTO {t['agencies']} VALUES ($1, $1, $2, $3, $4)",
            e.agency_key,
            e.name,
            e.primary_color,
            env.at,
        )
        await conn.execute(
            f"INSERT INTO {t['agency_names']} VALUES ($1, $2, $3)",
            e.agency_key,
            e.name,
            e.primary_color,
        )

    async def _Agency_Renamed(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        name = env.e.name
        await conn.execute(f"UPDATE {t['agencies']} SET name = $2 WHERE tenant_id = $1", env.scope, name)
        await conn.execute(f"UPDATE {t['agency_names']} SET name = $2 WHERE agency_id = $1", env.scope, name)

    # ---------------------------------------------------------------- tenants
    async def _Tenant_Created(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        e = env.e
        await conn.execute(
            f"INSERT INTO {t['tenants']} (tenant_id, agency_id, name, kind, timezone, locale, status, "
            "created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, 'ACTIVE', $7, $7, $8)",
            e.tenant_key,
            e.agency_key,
            e.name,
            e.kind,
            e.timezone,
            e.locale,
            env.at,
            env.version,
        )

    async def _tenant_set(
        self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope, column: str, value: object
    ) -> None:
        await conn.execute(
            f"UPDATE {t['tenants']} SET {column} = $2, updated_at = $3, version = $4 WHERE tenant_id = $1",
            env.scope,
            value,
            env.at,
            env.version,
        )

    async def _Tenant_Renamed(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await self._tenant_set(conn, t, env, "name", env.e.name)

    async def _Tenant_TimezoneChanged(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await self._tenant_set(conn, t, env, "timezone", env.e.timezone)

    async def _Tenant_StatusChanged(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await self._tenant_set(conn, t, env, "status", env.e.status)

    async def _Tenant_ApprovalPolicySet(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        e = env.e
        p = e.policy
        await conn.execute(
            f"UPDATE {t['tenants']} SET approval_internal = $2, approval_client = $3, approval_expires_hours = $4, "
            "approval_version = $5, updated_at = $6, version = $7 WHERE tenant_id = $1",
            env.scope,
            p["internal_approvals"],
            p["client_approval"],
            p["expires_after_hours"],
            e.version,
            env.at,
            env.version,
        )

    async def _Tenant_CrisisActivated(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await conn.execute(
            f"UPDATE {t['tenants']} SET crisis_since = $2, crisis_reason = $3, crisis_by = $4, updated_at = $2, "
            "version = $5, crisis_suggested_at = NULL, crisis_suggestion = NULL WHERE tenant_id = $1",
            env.scope,
            env.at,
            env.e.reason,
            env.meta.get("actor"),
            env.version,
        )

    async def _Tenant_CrisisSuggested(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        e = env.e
        await conn.execute(
            f"UPDATE {t['tenants']} SET crisis_suggested_at = $2, crisis_suggestion = $3::jsonb, version = $4 "
            "WHERE tenant_id = $1",
            env.scope,
            env.at,
            dumps({"reason": e.reason, "figures": e.figures}),
            env.version,
        )

    async def _Tenant_CrisisDeactivated(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await conn.execute(
            f"UPDATE {t['tenants']} SET crisis_since = NULL, crisis_reason = NULL, crisis_by = NULL, "
            "crisis_suggested_at = NULL, crisis_suggestion = NULL, updated_at = $2, version = $3 WHERE tenant_id = $1",
            env.scope,
            env.at,
            env.version,
        )

    # ---------------------------------------------------------------- channels
    async def _Channel_Connected(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        e = env.e
        await conn.execute(
            f"INSERT INTO {t['channels']} (tenant_id, agency_id, id, platform, handle, mission, connector, health, "
            f"connected, created_at) SELECT $1, agency_id, $2, $3, $4, $5, $6, 'UNKNOWN', true, $7 "
            f"FROM {t['tenants']} WHERE tenant_id = $1",
            env.scope,
            env.originator_id,
            e.platform,
            e.handle,
            e.mission,
            e.connector,
            env.at,
        )

    async def _Channel_HealthChecked(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        e = env.e
        await conn.execute(
            f"UPDATE {t['channels']} SET health = $3, health_detail = $4 WHERE tenant_id = $1 AND id = $2",
            env.scope,
            env.originator_id,
            e.health,
            e.detail,
        )

    async def _Channel_CredentialsReplaced(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await conn.execute(
            f"UPDATE {t['channels']} SET health = 'UNKNOWN', health_detail = NULL WHERE tenant_id = $1 AND id = $2",
            env.scope,
            env.originator_id,
        )

    async def _Channel_Disconnected(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await conn.execute(
            f"UPDATE {t['channels']} SET connected = false WHERE tenant_id = $1 AND id = $2",
            env.scope,
            env.originator_id,
        )

    # ---------------------------------------------------------------- people
    async def _User_Registered(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        e = env.e
        await conn.execute(
            f"INSERT INTO {t['principals']} VALUES ($1, $2, $3, $4, $5, $6)",
            env.originator_id,
            e.agency_key,
            e.email,
            e.display_name,
            e.password,
            env.at,
        )

    async def _User_PasswordChanged(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await conn.execute(
            f"UPDATE {t['principals']} SET password = $2 WHERE user_id = $1",
            env.originator_id,
            env.e.password,
        )

    async def _User_PasswordResealed(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await self._User_PasswordChanged(conn, t, env)

    async def _User_TokensRevoked(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await conn.execute(
            f"UPDATE {t['principals']} SET tokens_valid_after = $2 WHERE user_id = $1", env.originator_id, env.at
        )

    async def _User_Renamed(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        name = env.e.display_name
        await conn.execute(
            f"UPDATE {t['principals']} SET display_name = $2 WHERE user_id = $1", env.originator_id, name
        )
        await conn.execute(
            f"UPDATE {t['memberships']} SET user_display_name = $2 WHERE user_id = $1", env.originator_id, name
        )

    async def _Membership_Granted(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        e = env.e
        await conn.execute(
            f"INSERT INTO {t['memberships']} (tenant_id, agency_id, id, user_id, role, agency_wide, user_email, "
            f"user_display_name, active, granted_at) SELECT $1, $2, $3, $4, $5, $6, email, display_name, true, $7 "
            f"FROM {t['principals']} WHERE user_id = $4",
            env.scope,
            e.agency_key,
            env.originator_id,
            e.user_id,
            e.role,
            e.tenant_key is None,
            env.at,
        )
        await conn.execute(
            f"INSERT INTO {t['grants']} VALUES ($1, $2, $3, $4, $5, true) "
            "ON CONFLICT (user_id, role, scope) DO UPDATE SET active = true",
            e.user_id,
            e.role,
            env.scope,
            e.tenant_key,
            e.agency_key,
        )

    async def _membership_active(
        self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope, active: bool
    ) -> None:
        row = await conn.fetchrow(
            f"UPDATE {t['memberships']} SET active = $3 WHERE tenant_id = $1 AND id = $2 RETURNING user_id, role",
            env.scope,
            env.originator_id,
            active,
        )
        if row:
            await conn.execute(
                f"UPDATE {t['grants']} SET active = $4 WHERE user_id = $1 AND role = $2 AND scope = $3",
                row["user_id"],
                row["role"],
                env.scope,
                active,
            )

    async def _Membership_Revoked(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await self._membership_active(conn, t, env, False)

    async def _Membership_Regranted(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        await self._membership_active(conn, t, env, True)

    async def _ApiKey_Issued(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        e = env.e
        await conn.execute(
            f"INSERT INTO {t['api_keys']} VALUES ($1, $2, $3, $4, true, $5)",
            e.key_id,
            e.user_id,
            e.name,
            e.digest,
            env.at,
        )

    async def _ApiKey_Revoked(self, conn: asyncpg.Connection, t: Mapping[str, str], env: Envelope) -> None:
        key_id = env.originator_id.rsplit("/", 1)[-1]
        await conn.execute(f"UPDATE {t['api_keys']} SET active = false WHERE key_id = $1", key_id)
