"""The database layout shared by every process: event table, schemas, roles, tracking, RLS helpers."""

from __future__ import annotations

import asyncpg

EVENTS = "public.parvis_events"
APP_ROLE = "parvis_app"

# The event table is created here, before the library does, so that originator ids use the "C"
# collation: a tenant's aggregates ('<tenant>/...') then form one primary-key range.
_EVENTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {EVENTS} (
    originator_id text COLLATE "C" NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
) WITH (autovacuum_vacuum_threshold = 100000000, autovacuum_vacuum_scale_factor = 0.5,
        autovacuum_analyze_threshold = 1000, autovacuum_analyze_scale_factor = 0.01);
CREATE UNIQUE INDEX IF NOT EXISTS parvis_events_notification_id_idx ON {EVENTS} (notification_id ASC);
"""

_BASE_DDL = f"""
CREATE SCHEMA IF NOT EXISTS read;
CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS parvis;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
END $$;
GRANT USAGE ON SCHEMA read, auth, parvis TO {APP_ROLE};
CREATE OR REPLACE FUNCTION read.visible(tenant text, agency text) RETURNS boolean
  LANGUAGE sql STABLE PARALLEL SAFE AS $f$
    SELECT tenant = ANY (string_to_array(coalesce(current_setting('parvis.tenants', true), ''), ','))
        OR agency = nullif(current_setting('parvis.agency', true), '')
  $f$;
GRANT EXECUTE ON FUNCTION read.visible(text, text) TO {APP_ROLE};
CREATE TABLE IF NOT EXISTS parvis.tracking (
    projection text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    version int NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS parvis.idempotency (
    principal text NOT NULL,
    key text NOT NULL,
    operation text NOT NULL,
    input_hash text NOT NULL,
    result jsonb,
    position bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
-- Per-author data keys (crypto-shredding); the app role never reads them.
CREATE TABLE IF NOT EXISTS parvis.author_keys (
    tenant_id text NOT NULL,
    author_ref text NOT NULL,
    wrapped bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, author_ref)
);
-- Keys that must outlive a rotation of the master secret (the author references' key), wrapped under it.
CREATE TABLE IF NOT EXISTS parvis.keyring (
    purpose text PRIMARY KEY,
    wrapped bytea NOT NULL
);
-- Report files: derived, too large for events (the events keep their digests); kept by tenant, outside the
-- rebuildable read models. The owner (the workers) writes them; the app role reads its caller's tenants' only.
CREATE TABLE IF NOT EXISTS parvis.report_files (
    tenant_id text NOT NULL,
    agency_id text NOT NULL,
    report_id text NOT NULL,
    format text NOT NULL,
    media_type text NOT NULL,
    content bytea NOT NULL,
    sha256 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, report_id, format)
);
ALTER TABLE parvis.report_files ENABLE ROW LEVEL SECURITY;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = 'parvis' AND tablename = 'report_files') THEN
    CREATE POLICY report_files_scope ON parvis.report_files FOR SELECT TO {APP_ROLE}
      USING (read.visible(tenant_id, agency_id));
  END IF;
END $$;
GRANT SELECT ON parvis.report_files TO {APP_ROLE};
-- The outbox of jobs (created by the dispatcher) carries the trace of the request that caused each job.
ALTER TABLE IF EXISTS parvis.jobs ADD COLUMN IF NOT EXISTS traceparent text;
GRANT SELECT ON parvis.tracking TO {APP_ROLE};
SET LOCAL check_function_bodies = off;
-- The app role cannot read the event table; it may read the events of a scope it can see, to verify them.
CREATE OR REPLACE FUNCTION parvis.scope_events(scope text)
RETURNS TABLE (notification_id bigint, originator_id text, originator_version bigint, topic text, state bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $f$
  SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state
  FROM public.parvis_events e
  WHERE e.originator_id >= scope || '/' AND e.originator_id < scope || '0'
    AND EXISTS (SELECT 1 FROM read.history_heads h WHERE h.tenant_id = scope AND read.visible(h.tenant_id, h.agency_id))
  ORDER BY e.notification_id
$f$;
REVOKE ALL ON FUNCTION parvis.scope_events(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION parvis.scope_events(text) TO {APP_ROLE};
GRANT SELECT, INSERT, UPDATE, DELETE ON parvis.idempotency TO {APP_ROLE};
"""


def rls(table: str, owner: str) -> str:
    """Row-level security for a read-model table: the app role sees the caller's tenants only."""
    plain = table.rsplit(".", maxsplit=1)[-1]
    return f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
CREATE POLICY {plain}_scope ON {table} FOR SELECT TO {APP_ROLE} USING (read.visible(tenant_id, agency_id));
CREATE POLICY {plain}_writer ON {table} FOR ALL TO "{owner}" USING (true) WITH CHECK (true);
GRANT SELECT ON {table} TO {APP_ROLE};
"""


async def migrate(conn: asyncpg.Connection) -> None:
    """Create what every process expects; safe to run again."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('parvis.migrate'))")
        await conn.execute(_EVENTS_DDL)
        await conn.execute(_BASE_DDL)


async def head_position(conn: asyncpg.Connection) -> int:
    """The highest event position in the store."""
    value = await conn.fetchval(f"SELECT max(notification_id) FROM {EVENTS}")
    return int(value or 0)
