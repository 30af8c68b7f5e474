"""Read model of metric observations (one row per channel or post, metric, instant and source) and of reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from projections.base import Envelope, Projection, dumps

_REPORT_COLUMNS = ("tenant_id", "agency_id", "id", "period_start", "period_end", "trigger", "requested_by",
                   "status", "created_at", "position")
_PLACES = ", ".join(f"${i}" for i in range(1, len(_REPORT_COLUMNS) + 1))


class Metrics(Projection):
    """Observations as recorded; a second observation of the same key replaces the first (last write wins)."""

    name = "metrics"
    version = 2
    tables = {"tenants": "read.metric_tenants", "observations": "read.metric_observations", "reports": "read.reports"}

    def ddl(self, t: Mapping[str, str]) -> str:
        return f"""
CREATE TABLE {t["tenants"]} (tenant_id text PRIMARY KEY, agency_id text NOT NULL);
CREATE TABLE {t["observations"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, channel_id text NOT NULL, post_id text NOT NULL,
    metric text NOT NULL, at timestamptz NOT NULL, source text NOT NULL, value double precision NOT NULL,
    position bigint NOT NULL, PRIMARY KEY (tenant_id, metric, channel_id, post_id, at, source));
CREATE INDEX ON {t["observations"]} (tenant_id, metric, at);
CREATE TABLE {t["reports"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, id text NOT NULL, period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL, trigger text NOT NULL, requested_by text NOT NULL, status text NOT NULL,
    created_at timestamptz NOT NULL, ready_at timestamptz, files jsonb NOT NULL DEFAULT '{{}}',
    summary jsonb NOT NULL DEFAULT '{{}}', error text, position bigint NOT NULL, PRIMARY KEY (tenant_id, id));
CREATE INDEX ON {t["reports"]} (tenant_id, created_at DESC, id DESC);
"""

    async def apply(self, conn: asyncpg.Connection, t: Mapping[str, str], batch: Sequence[Envelope]) -> set[str]:
        touched: set[str] = set()
        scopes = sorted({env.scope for env in batch})
        rows = await conn.fetch(f"SELECT * FROM {t['tenants']} WHERE tenant_id = ANY($1)", scopes)
        agencies = {r["tenant_id"]: r["agency_id"] for r in rows}
        for env in batch:
            if (env.aggregate_type, env.event_type) == ("Tenant", "Created"):
                agencies[env.scope] = env.e.agency_key
                await conn.execute(f"INSERT INTO {t['tenants']} VALUES ($1, $2) ON CONFLICT DO NOTHING",
                                   env.scope, env.e.agency_key)
            elif (env.aggregate_type, env.event_type) == ("MetricBatch", "Recorded"):
                agency = agencies.get(env.scope, "")
                await conn.executemany(
                    f"INSERT INTO {t['observations']} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                    "ON CONFLICT (tenant_id, metric, channel_id, post_id, at, source) "
                    "DO UPDATE SET value = excluded.value, position = excluded.position",
                    [(env.scope, agency, o["channel_id"], o["post_id"] or "", o["metric"],
                      datetime.fromisoformat(o["at"]), o["source"] or "", o["value"], env.position)
                     for o in env.e.observations],
                )
                touched.add(env.scope)
            elif env.aggregate_type == "Report":
                await self._report(conn, t["reports"], env, agencies.get(env.scope, ""))
        return touched

    async def _report(self, conn: asyncpg.Connection, table: str, env: Envelope, agency: str) -> None:
        e = env.e
        if env.event_type == "Requested":
            values = (env.scope, agency, env.originator_id, e.period_start, e.period_end, e.trigger, e.requested_by,
                      "REQUESTED", env.at, env.position)
            await conn.execute(
                f"INSERT INTO {table} ({', '.join(_REPORT_COLUMNS)}) VALUES ({_PLACES}) "
                "ON CONFLICT (tenant_id, id) DO NOTHING", *values)
        elif env.event_type == "Generated":
            await conn.execute(
                f"UPDATE {table} SET status = 'READY', ready_at = $3, files = $4::jsonb, summary = $5::jsonb, "
                "error = NULL, position = $6 WHERE tenant_id = $1 AND id = $2",
                env.scope, env.originator_id, env.at, dumps(e.files), dumps(e.summary), env.position)
        elif env.event_type == "Failed":
            await conn.execute(
                f"UPDATE {table} SET status = 'FAILED', error = $3, position = $4 WHERE tenant_id = $1 AND id = $2",
                env.scope, env.originator_id, e.reason, env.position)
