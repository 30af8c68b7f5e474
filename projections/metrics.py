"""Read model of metric observations, one row per channel (or post), metric, instant and source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from projections.base import Envelope, Projection


class Metrics(Projection):
    """Observations as recorded; a second observation of the same key replaces the first (last write wins)."""

    name = "metrics"
    version = 1
    tables = {"tenants": "read.metric_tenants", "observations": "read.metric_observations"}

    def ddl(self, t: Mapping[str, str]) -> str:
        return f"""
CREATE TABLE {t["tenants"]} (tenant_id text PRIMARY KEY, agency_id text NOT NULL);
CREATE TABLE {t["observations"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, channel_id text NOT NULL, post_id text NOT NULL,
    metric text NOT NULL, at timestamptz NOT NULL, source text NOT NULL, value double precision NOT NULL,
    position bigint NOT NULL, PRIMARY KEY (tenant_id, metric, channel_id, post_id, at, source));
CREATE INDEX ON {t["observations"]} (tenant_id, metric, at);
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
        return touched
