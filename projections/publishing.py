"""Read models of strategy and publishing: strategy versions, campaigns, posts and their state changes.

Post rows are loaded once per batch, changed in memory by each event, and written back in one statement,
so a batch of hundreds of events on the same posts costs a handful of round trips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from projections.base import Envelope, Projection, dumps, fetch_rows, upsert_rows

_POST_COLUMNS = (
    "tenant_id", "agency_id", "id", "status", "version", "author_id", "campaign_id", "objective_id", "persona_id",
    "temperature", "variants", "scheduled_at", "approvals", "policy", "submission", "hold_reason", "error",
    "created_at", "updated_at", "position",
)
_JSON_COLUMNS = frozenset({"variants", "approvals", "policy"})


class Publishing(Projection):
    """Strategy versions, campaigns, posts (with variants and approvals) and every post state change."""

    name = "publishing"
    version = 2
    live = True
    tables = {
        "tenants": "read.publishing_tenants",
        "strategies": "read.strategies",
        "campaigns": "read.campaigns",
        "posts": "read.posts",
        "transitions": "read.post_transitions",
    }

    def ddl(self, t: Mapping[str, str]) -> str:
        return f"""
CREATE TABLE {t["tenants"]} (
    tenant_id text PRIMARY KEY, agency_id text NOT NULL, timezone text NOT NULL, strategy_version int);
CREATE TABLE {t["strategies"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, version int NOT NULL, effective_from timestamptz NOT NULL,
    revised_by text, reason text, positioning text, objectives jsonb NOT NULL, personas jsonb NOT NULL,
    editorial_line jsonb NOT NULL, position bigint NOT NULL, PRIMARY KEY (tenant_id, version));
CREATE INDEX ON {t["strategies"]} (tenant_id, effective_from);
CREATE TABLE {t["campaigns"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, id text NOT NULL, name text NOT NULL, hashtag text,
    starts_at timestamptz, ends_at timestamptz, objective_ids jsonb NOT NULL, budget double precision,
    created_at timestamptz NOT NULL, PRIMARY KEY (tenant_id, id));
CREATE INDEX ON {t["campaigns"]} (tenant_id, created_at, id);
CREATE TABLE {t["posts"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, id text NOT NULL, status text NOT NULL,
    version bigint NOT NULL, author_id text NOT NULL, campaign_id text, objective_id text, persona_id text,
    temperature text NOT NULL, variants jsonb NOT NULL, scheduled_at timestamptz, approvals jsonb NOT NULL,
    policy jsonb, submission int NOT NULL, hold_reason text, error text, created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL, position bigint NOT NULL, PRIMARY KEY (tenant_id, id));
CREATE INDEX ON {t["posts"]} (tenant_id, created_at DESC, id DESC);
CREATE INDEX ON {t["posts"]} (tenant_id, status);
CREATE INDEX ON {t["posts"]} (tenant_id, scheduled_at) WHERE scheduled_at IS NOT NULL;
CREATE TABLE {t["transitions"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, post_id text NOT NULL, position bigint NOT NULL,
    status text NOT NULL, at timestamptz NOT NULL, actor text NOT NULL, PRIMARY KEY (tenant_id, position, post_id));
CREATE INDEX ON {t["transitions"]} (tenant_id, post_id, position);
"""

    async def apply(self, conn: asyncpg.Connection, t: Mapping[str, str], batch: Sequence[Envelope]) -> set[str]:
        work = _Batch(conn, t)
        await work.load(batch)
        for env in batch:
            handler = getattr(self, f"_{env.aggregate_type}_{env.event_type}", None)
            if handler is not None:
                handler(work, env)
                work.touched.add(env.scope)
        await work.write()
        return work.touched

    # ---------------------------------------------------------------- tenants, strategy, campaigns
    def _Tenant_Created(self, work: _Batch, env: Envelope) -> None:
        e = env.e
        work.agencies[env.scope] = e.agency_key
        work.new_tenants.append((env.scope, e.agency_key, e.timezone))

    def _Tenant_TimezoneChanged(self, work: _Batch, env: Envelope) -> None:
        work.timezones.append((env.scope, env.e.timezone))

    def _Strategy_Revised(self, work: _Batch, env: Envelope) -> None:
        e = env.e
        work.strategy_versions[env.scope] = e.number
        work.strategies.append(
            (env.scope, work.agency(env), e.number, env.at, env.meta.get("actor"), e.reason, e.positioning,
             dumps(e.objectives), dumps(e.personas), dumps(e.editorial_line), env.position)
        )

    def _Campaign_Created(self, work: _Batch, env: Envelope) -> None:
        e = env.e
        work.campaigns.append(
            (env.scope, work.agency(env), env.originator_id, e.name, e.hashtag, e.starts_at, e.ends_at,
             dumps(e.objective_ids), e.budget, env.at)
        )

    # ---------------------------------------------------------------- posts
    def _Post_Drafted(self, work: _Batch, env: Envelope) -> None:
        e = env.e
        variants = [{**v, "external_id": None, "external_url": None, "published_at": None, "error": None}
                    for v in e.variants]
        work.posts[env.originator_id] = {
            "tenant_id": env.scope, "agency_id": work.agency(env), "id": env.originator_id, "status": "DRAFT",
            "version": env.version, "author_id": e.author_id, "campaign_id": e.campaign_id,
            "objective_id": e.objective_id, "persona_id": e.persona_id, "temperature": e.temperature,
            "variants": variants, "scheduled_at": None, "approvals": [], "policy": None, "submission": 0,
            "hold_reason": None, "error": None, "created_at": env.at, "updated_at": env.at, "position": env.position,
        }
        work.transition(env, "DRAFT")

    def _Post_Edited(self, work: _Batch, env: Envelope) -> None:
        post = work.post(env)
        post["variants"] = [{**v, "external_id": None, "external_url": None, "published_at": None, "error": None}
                            for v in env.e.variants]
        work.set_status(env, post, "DRAFT")

    def _Post_Submitted(self, work: _Batch, env: Envelope) -> None:
        e = env.e
        post = work.post(env)
        post["policy"] = {**e.policy, "version": e.policy_version}
        post["submission"] = e.submission
        work.set_status(env, post, e.status)

    def _review(self, work: _Batch, env: Envelope, approved: bool, status: str) -> None:
        e = env.e
        post = work.post(env)
        post["approvals"] = [
            *post["approvals"],
            {"by": e.by, "step": e.step, "approved": approved, "comment": e.comment, "at": env.at.isoformat(),
             "submission": post["submission"], "policy_version": (post["policy"] or {}).get("version"),
             "strategy_version": work.strategy_versions.get(env.scope), "on_behalf_of": env.meta.get("on_behalf_of")},
        ]
        work.set_status(env, post, status)

    def _Post_Approved(self, work: _Batch, env: Envelope) -> None:
        self._review(work, env, True, env.e.status)

    def _Post_ChangesRequested(self, work: _Batch, env: Envelope) -> None:
        self._review(work, env, False, "CHANGES_REQUESTED")

    def _Post_Rejected(self, work: _Batch, env: Envelope) -> None:
        self._review(work, env, False, "CANCELLED")

    def _Post_ApprovalExpired(self, work: _Batch, env: Envelope) -> None:
        work.set_status(env, work.post(env), "DRAFT")

    def _Post_Scheduled(self, work: _Batch, env: Envelope) -> None:
        post = work.post(env)
        post["scheduled_at"] = env.e.at
        work.set_status(env, post, "SCHEDULED")

    def _Post_Held(self, work: _Batch, env: Envelope) -> None:
        post = work.post(env)
        post["hold_reason"] = env.e.reason
        work.set_status(env, post, "HELD")

    def _Post_Released(self, work: _Batch, env: Envelope) -> None:
        post = work.post(env)
        post["hold_reason"] = None
        if env.e.status == "APPROVED":
            post["scheduled_at"] = None
        work.set_status(env, post, env.e.status)

    def _Post_Cancelled(self, work: _Batch, env: Envelope) -> None:
        work.set_status(env, work.post(env), "CANCELLED")

    def _Post_PublishingStarted(self, work: _Batch, env: Envelope) -> None:
        work.set_status(env, work.post(env), "PUBLISHING")

    def _Post_VariantPublished(self, work: _Batch, env: Envelope) -> None:
        e = env.e
        post = work.post(env)
        published_at = e.at.isoformat() if isinstance(e.at, datetime) else e.at
        post["variants"] = [
            {**v, "external_id": e.external_id, "external_url": e.url, "published_at": published_at, "error": None}
            if v["channel_id"] == e.channel_id else v
            for v in post["variants"]
        ]
        work.touch(env, post)

    def _Post_Published(self, work: _Batch, env: Envelope) -> None:
        work.set_status(env, work.post(env), "PUBLISHED")

    def _Post_PublishFailed(self, work: _Batch, env: Envelope) -> None:
        e = env.e
        post = work.post(env)
        error = f"{e.kind}: {e.message}"
        post["variants"] = [{**v, "error": error} if v["channel_id"] == e.channel_id else v for v in post["variants"]]
        post["error"] = error
        work.set_status(env, post, "FAILED")


class _Batch:
    """The rows one batch reads and writes."""

    def __init__(self, conn: asyncpg.Connection, t: Mapping[str, str]) -> None:
        self.conn = conn
        self.t = t
        self.touched: set[str] = set()
        self.agencies: dict[str, str] = {}
        self.posts: dict[str, dict[str, Any]] = {}
        self.changed: set[str] = set()
        self.new_tenants: list[tuple[Any, ...]] = []
        self.strategy_versions: dict[str, int] = {}
        self.timezones: list[tuple[str, str]] = []
        self.strategies: list[tuple[Any, ...]] = []
        self.campaigns: list[tuple[Any, ...]] = []
        self.transitions: list[tuple[Any, ...]] = []

    async def load(self, batch: Sequence[Envelope]) -> None:
        scopes = sorted({env.scope for env in batch})
        rows = await self.conn.fetch(
            f"SELECT tenant_id, agency_id, strategy_version FROM {self.t['tenants']} WHERE tenant_id = ANY($1)", scopes
        )
        self.agencies.update({r["tenant_id"]: r["agency_id"] for r in rows})
        self.strategy_versions.update({r["tenant_id"]: r["strategy_version"] for r in rows if r["strategy_version"]})
        post_ids = sorted({env.originator_id for env in batch if env.aggregate_type == "Post"})
        self.posts.update(await fetch_rows(self.conn, self.t["posts"], post_ids, _JSON_COLUMNS))

    def agency(self, env: Envelope) -> str:
        return self.agencies.get(env.scope, "")

    def post(self, env: Envelope) -> dict[str, Any]:
        return self.posts[env.originator_id]

    def touch(self, env: Envelope, post: dict[str, Any]) -> None:
        post["version"] = env.version
        post["updated_at"] = env.at
        post["position"] = env.position
        self.changed.add(post["id"])

    def set_status(self, env: Envelope, post: dict[str, Any], status: str) -> None:
        post["status"] = status
        self.touch(env, post)
        self.transition(env, status)

    def transition(self, env: Envelope, status: str) -> None:
        self.changed.add(env.originator_id)
        self.transitions.append(
            (env.scope, self.agency(env), env.originator_id, env.position, status, env.at,
             env.meta.get("actor", "system"))
        )

    async def write(self) -> None:
        t, conn = self.t, self.conn
        if self.new_tenants:
            await conn.executemany(
                f"INSERT INTO {t['tenants']} VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING", self.new_tenants
            )
        if self.strategy_versions:
            await conn.executemany(f"UPDATE {t['tenants']} SET strategy_version = $2 WHERE tenant_id = $1",
                                   list(self.strategy_versions.items()))
        if self.timezones:
            await conn.executemany(f"UPDATE {t['tenants']} SET timezone = $2 WHERE tenant_id = $1", self.timezones)
        if self.strategies:
            await conn.executemany(
                f"INSERT INTO {t['strategies']} VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10::jsonb, "
                "$11)",
                self.strategies,
            )
        if self.campaigns:
            await conn.executemany(
                f"INSERT INTO {t['campaigns']} VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10)", self.campaigns
            )
        await upsert_rows(conn, t["posts"], _POST_COLUMNS, _JSON_COLUMNS,
                          [p for pid, p in self.posts.items() if pid in self.changed])
        if self.transitions:
            await conn.executemany(
                f"INSERT INTO {t['transitions']} VALUES ($1, $2, $3, $4, $5, $6, $7)", self.transitions
            )
