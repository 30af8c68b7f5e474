"""The per-tenant history: every event with its metadata, in order, under a sha256 hash chain."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from projections.base import Envelope, Projection, dumps

GENESIS = "0" * 64


def chain(previous: str, canonical: bytes) -> str:
    """hash_n = sha256(hash_{n-1} || canonical event bytes), hex."""
    return hashlib.sha256(previous.encode() + canonical).hexdigest()


class History(Projection):
    """The audit log of each tenant (and of the agency's own scope)."""

    name = "history"
    version = 1
    live = True
    tables = {"history": "read.history", "heads": "read.history_heads"}

    def ddl(self, t: Mapping[str, str]) -> str:
        return f"""
CREATE TABLE {t["history"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, seq bigint NOT NULL, position bigint NOT NULL,
    occurred_at timestamptz NOT NULL, type text NOT NULL, aggregate_type text NOT NULL,
    aggregate_id text NOT NULL, version bigint NOT NULL, actor text NOT NULL, actor_role text,
    on_behalf_of text, reason text, correlation_id text, causation_id text, data jsonb NOT NULL,
    hash text NOT NULL, PRIMARY KEY (tenant_id, seq));
CREATE INDEX ON {t["history"]} (tenant_id, aggregate_id, seq);
CREATE INDEX ON {t["history"]} (tenant_id, position);
CREATE TABLE {t["heads"]} (
    tenant_id text PRIMARY KEY, agency_id text NOT NULL, seq bigint NOT NULL, hash text NOT NULL,
    position bigint NOT NULL);
"""

    async def apply(self, conn: asyncpg.Connection, t: Mapping[str, str], batch: Sequence[Envelope]) -> set[str]:
        scopes = sorted({env.scope for env in batch})
        heads: dict[str, dict[str, Any]] = {
            r["tenant_id"]: dict(r)
            for r in await conn.fetch(f"SELECT * FROM {t['heads']} WHERE tenant_id = ANY($1)", scopes)
        }
        rows = []
        for env in batch:
            head = heads.get(env.scope)
            if head is None:
                head = {"tenant_id": env.scope, "agency_id": _agency_of(env), "seq": 0, "hash": GENESIS, "position": 0}
                heads[env.scope] = head
            head["seq"] += 1
            head["hash"] = chain(head["hash"], env.canonical())
            head["position"] = env.position
            meta = env.meta
            rows.append(
                (
                    env.scope,
                    head["agency_id"],
                    head["seq"],
                    env.position,
                    env.at,
                    env.event_type,
                    env.aggregate_type,
                    env.originator_id,
                    env.version,
                    meta.get("actor", "system"),
                    meta.get("role"),
                    meta.get("on_behalf_of"),
                    meta.get("reason"),
                    meta.get("correlation_id"),
                    meta.get("causation_id"),
                    dumps(env.data()),
                    head["hash"],
                )
            )
        await conn.executemany(
            f"INSERT INTO {t['history']} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, "
            "$16::jsonb, $17)",
            rows,
        )
        await conn.executemany(
            f"INSERT INTO {t['heads']} VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO UPDATE "
            "SET seq = excluded.seq, hash = excluded.hash, position = excluded.position",
            [
                (h["tenant_id"], h["agency_id"], h["seq"], h["hash"], h["position"])
                for h in heads.values()
                if h["tenant_id"] in scopes
            ],
        )
        return set(scopes)


def _agency_of(env: Envelope) -> str:
    """The agency owning a scope, known from the scope's first event (agency or tenant creation)."""
    data = env.event
    return str(getattr(data, "agency_key", "") or env.scope)
