"""Read models of the moderation inbox: policy versions, interactions with their decisions, and a change feed.

Interactions carry their author and text in clear here (opened with the author's key while it exists), so the
queue can be read and searched fast; erasing an author overwrites them, and a rebuild after the erasure finds
no key and writes "[erased]" straight away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from projections.base import Envelope, Projection, dumps, fetch_rows, upsert_rows
from projections.personal import ERASED, PersonalCipher, fetch_keys

_COLUMNS = (
    "tenant_id", "agency_id", "id", "channel_id", "kind", "external_id", "author_ref", "author", "text",
    "received_at", "in_reply_to", "status", "language", "sentiment", "sentiment_corrected", "spam_score",
    "matched_rule_ids", "assignee_id", "due_by", "answered_at", "breached", "decisions", "erased", "updated_at",
    "position",
)
_JSON = frozenset({"matched_rule_ids", "decisions"})
# Decisions that answer an interaction (an escalation hands it on: the clock keeps running).
_ANSWERS = {"APPROVE", "HIDE", "DELETE", "REPLY", "MARK_SPAM", "DISMISS"}


class Moderation(Projection):
    """Moderation policy versions, the interactions of each tenant, and every change to them, in order."""

    name = "moderation"
    version = 2
    live = True
    tables = {
        "tenants": "read.moderation_tenants",
        "policies": "read.moderation_policies",
        "interactions": "read.interactions",
        "changes": "read.interaction_changes",
    }

    def __init__(self, cipher: PersonalCipher) -> None:
        self.cipher = cipher

    def ddl(self, t: Mapping[str, str]) -> str:
        return f"""
CREATE TABLE {t["tenants"]} (tenant_id text PRIMARY KEY, agency_id text NOT NULL);
CREATE TABLE {t["policies"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, version int NOT NULL, effective_from timestamptz NOT NULL,
    set_by text, reason text, terms jsonb NOT NULL, PRIMARY KEY (tenant_id, version));
CREATE TABLE {t["interactions"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, id text NOT NULL, channel_id text NOT NULL,
    kind text NOT NULL, external_id text NOT NULL, author_ref text NOT NULL, author text NOT NULL,
    text text NOT NULL, received_at timestamptz NOT NULL, in_reply_to text, status text NOT NULL, language text,
    sentiment text, sentiment_corrected boolean NOT NULL DEFAULT false, spam_score double precision,
    matched_rule_ids jsonb NOT NULL, assignee_id text, due_by timestamptz NOT NULL, answered_at timestamptz,
    breached boolean NOT NULL DEFAULT false, decisions jsonb NOT NULL, erased boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL, position bigint NOT NULL, PRIMARY KEY (tenant_id, id));
CREATE INDEX ON {t["interactions"]} (tenant_id, received_at DESC, id DESC);
CREATE INDEX ON {t["interactions"]} (tenant_id, status, received_at DESC);
CREATE INDEX ON {t["interactions"]} (tenant_id, author_ref);
CREATE INDEX ON {t["interactions"]} (tenant_id, due_by) WHERE answered_at IS NULL;
CREATE TABLE {t["changes"]} (
    tenant_id text NOT NULL, agency_id text NOT NULL, interaction_id text NOT NULL, position bigint NOT NULL,
    PRIMARY KEY (tenant_id, position, interaction_id));
"""

    async def apply(self, conn: asyncpg.Connection, t: Mapping[str, str], batch: Sequence[Envelope]) -> set[str]:
        work = _Batch(conn, t, self.cipher)
        await work.load(batch)
        for env in batch:
            handler = getattr(self, f"_{env.aggregate_type}_{env.event_type}", None)
            if handler is not None:
                handler(work, env)
                work.touched.add(env.scope)
        await work.write()
        return work.touched

    def _Tenant_Created(self, work: _Batch, env: Envelope) -> None:
        work.agencies[env.scope] = env.e.agency_key
        work.new_tenants.append((env.scope, env.e.agency_key))

    def _ModerationPolicy_Set(self, work: _Batch, env: Envelope) -> None:
        e = env.e
        work.policies.append((env.scope, work.agency(env), e.number, env.at, env.meta.get("actor"),
                              env.meta.get("reason"), dumps(e.terms)))

    def _Interaction_Received(self, work: _Batch, env: Envelope) -> None:
        e = env.e
        key = work.keys.get((env.scope, e.author_ref))
        work.rows[env.originator_id] = {
            "tenant_id": env.scope, "agency_id": work.agency(env), "id": env.originator_id,
            "channel_id": e.channel_id, "kind": e.kind, "external_id": e.external_id, "author_ref": e.author_ref,
            "author": self.cipher.open(key, e.author) or ERASED, "text": self.cipher.open(key, e.text) or ERASED,
            "received_at": e.received_at, "in_reply_to": e.in_reply_to, "status": "NEW", "language": None,
            "sentiment": None, "sentiment_corrected": False, "spam_score": None, "matched_rule_ids": [],
            "assignee_id": None, "due_by": e.due_by, "answered_at": None, "breached": False, "decisions": [],
            "erased": False, "updated_at": env.at, "position": env.position,
        }
        work.touch(env)

    def _Interaction_RulesMatched(self, work: _Batch, env: Envelope) -> None:
        row = work.row(env)
        row["matched_rule_ids"] = [*row["matched_rule_ids"], *env.e.rule_ids]
        work.touch(env)

    def _Interaction_Analysed(self, work: _Batch, env: Envelope) -> None:
        e = env.e
        row = work.row(env)
        row.update(language=e.language, sentiment=e.sentiment, spam_score=e.spam_score)
        work.touch(env)

    def _Interaction_SentimentCorrected(self, work: _Batch, env: Envelope) -> None:
        work.row(env).update(sentiment=env.e.sentiment, sentiment_corrected=True)
        work.touch(env)

    def _Interaction_Assigned(self, work: _Batch, env: Envelope) -> None:
        row = work.row(env)
        row["assignee_id"] = env.e.assignee_id
        if row["status"] == "NEW":
            row["status"] = "ASSIGNED"
        work.touch(env)

    def _decision(self, work: _Batch, env: Envelope, *, overturn: bool) -> None:
        e = env.e
        row = work.row(env)
        decisions = list(row["decisions"])
        if overturn and decisions:
            decisions[-1] = {**decisions[-1], "overturned": True}
        decisions.append({
            "decision": e.decision, "by": e.by, "rule_id": None if overturn else e.rule_id,
            "rationale": e.rationale, "reply_text": e.reply_text, "escalate_to": e.escalate_to,
            "policy_version": e.policy_version, "strategy_version": e.strategy_version, "overturned": False,
            "at": env.at.isoformat(), "actor": env.meta.get("actor", "system"),
            "on_behalf_of": env.meta.get("on_behalf_of"),
        })
        row["decisions"] = decisions
        row["status"] = e.status
        if e.decision in _ANSWERS and row["answered_at"] is None:
            row["answered_at"] = env.at
        work.touch(env)

    def _Interaction_Decided(self, work: _Batch, env: Envelope) -> None:
        self._decision(work, env, overturn=False)

    def _Interaction_Overturned(self, work: _Batch, env: Envelope) -> None:
        self._decision(work, env, overturn=True)

    def _Interaction_TargetBreached(self, work: _Batch, env: Envelope) -> None:
        work.row(env)["breached"] = True
        work.touch(env)

    def _Interaction_AuthorErased(self, work: _Batch, env: Envelope) -> None:
        work.row(env).update(author=ERASED, text=ERASED, erased=True)
        work.touch(env)


class _Batch:
    """The rows one batch reads and writes."""

    def __init__(self, conn: asyncpg.Connection, t: Mapping[str, str], cipher: PersonalCipher) -> None:
        self.conn = conn
        self.t = t
        self.cipher = cipher
        self.touched: set[str] = set()
        self.agencies: dict[str, str] = {}
        self.keys: Mapping[tuple[str, str], bytes] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        self.changed: set[str] = set()
        self.changes: list[tuple[Any, ...]] = []
        self.new_tenants: list[tuple[str, str]] = []
        self.policies: list[tuple[Any, ...]] = []

    async def load(self, batch: Sequence[Envelope]) -> None:
        scopes = sorted({env.scope for env in batch})
        rows = await self.conn.fetch(f"SELECT * FROM {self.t['tenants']} WHERE tenant_id = ANY($1)", scopes)
        self.agencies.update({r["tenant_id"]: r["agency_id"] for r in rows})
        received = [env for env in batch if env.aggregate_type == "Interaction" and env.event_type == "Received"]
        authors = sorted({(env.scope, env.e.author_ref) for env in received})
        self.keys = await fetch_keys(self.conn, self.cipher, authors)
        ids = sorted({env.originator_id for env in batch if env.aggregate_type == "Interaction"}
                     - {env.originator_id for env in received})
        self.rows.update(await fetch_rows(self.conn, self.t["interactions"], ids, _JSON))

    def agency(self, env: Envelope) -> str:
        return self.agencies.get(env.scope, "")

    def row(self, env: Envelope) -> dict[str, Any]:
        return self.rows[env.originator_id]

    def touch(self, env: Envelope) -> None:
        row = self.rows[env.originator_id]
        row["updated_at"] = env.at
        row["position"] = env.position
        self.changed.add(env.originator_id)
        self.changes.append((env.scope, self.agency(env), env.originator_id, env.position))

    async def write(self) -> None:
        t, conn = self.t, self.conn
        if self.new_tenants:
            await conn.executemany(
                f"INSERT INTO {t['tenants']} VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING", self.new_tenants
            )
        if self.policies:
            await conn.executemany(
                f"INSERT INTO {t['policies']} VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)", self.policies
            )
        await upsert_rows(conn, t["interactions"], _COLUMNS, _JSON,
                          [r for iid, r in self.rows.items() if iid in self.changed])
        if self.changes:
            await conn.executemany(
                f"INSERT INTO {t['changes']} VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", self.changes
            )
