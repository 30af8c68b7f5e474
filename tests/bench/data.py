"""Benchmark data: tenants with a realistic mix of events, written through the domain in batches."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from tests.support import PASSWORD, SECRET

READ_MODELS = ("directory", "history", "publishing", "moderation")


@dataclass(frozen=True)
class Seeded:
    tenant_id: str  # global id, as the API shows it
    tenant_key: str
    admin_email: str


def settings_for(database_url: str, redis_url: str) -> Any:
    from parvis.settings import Settings

    return Settings(env="test", database_url=database_url, redis_url=redis_url, secret_key=SECRET,
                    data_dir=Path(tempfile.gettempdir()) / "parvis-bench", db_pool_size=4)


def migrate(database_url: str, redis_url: str) -> None:
    from parvis.cli import _migrate

    asyncio.run(_migrate(settings_for(database_url, redis_url)))


def caught_up(database_url: str, within: float = 600) -> None:
    """Wait until every read model has reached the head of the event store."""
    deadline = time.monotonic() + within
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            head = conn.execute("SELECT coalesce(max(notification_id), 0) FROM parvis_events").fetchone()[0]  # type: ignore[index]
            rows = conn.execute("SELECT position FROM parvis.tracking WHERE projection = ANY(%s)",
                                (list(READ_MODELS),)).fetchall()
            if len(rows) == len(READ_MODELS) and all(r[0] >= head for r in rows):
                return
            time.sleep(0.2)
    raise TimeoutError("the read models did not catch up")


def populate(settings: Any, *, tenants: int, posts: int, interactions: int, prefix: str,
             progress: Callable[[int], None] | None = None) -> list[Seeded]:
    """`tenants` tenants of one new agency, each with a strategy, a moderation policy, posts along the approval
    chain, and a batch of interactions of which the rules decide some and a person others."""
    from domain.context import Actor, acting_as
    from domain.inbox import Incoming
    from domain.moderation import PolicyTerms, Rule
    from domain.post import Variant
    from domain.strategy import EditorialLine, Objective
    from parvis import wiring

    domain = wiring.domain(settings)
    seeded = []
    try:
        email = f"{prefix}-{uuid.uuid4().hex[:6]}@bench.test"
        agency, admin = domain.register_agency(f"Bench {prefix}", email, PASSWORD).value
        with acting_as(Actor(id=admin, role="AGENCY_ADMIN")):
            reviewer = domain.grant_membership(agency, f"r-{email}", "COMMUNITY_MANAGER", None, "r", PASSWORD).value[0]
        terms = PolicyTerms((Rule("Arnaques", "HIDE", ("arnaque", "bitcoin")),))
        for n in range(tenants):
            with acting_as(Actor(id=admin, role="AGENCY_ADMIN")):
                key = domain.create_tenant(agency, f"{prefix} {n}", "NGO", "Europe/Paris").value
                domain.set_approval_policy(key, 1, False, None)
                channel = domain.connect_channel(key, "SANDBOX", f"@{prefix}{n}", None, None).value
                domain.revise_strategy(key, "bench", None, [
                    Objective("Bénévoles", "ACTION", "volunteer_signups", 300, baseline=100),
                    Objective("Abonnés", "AWARENESS", "followers", 5000)], [], EditorialLine())
                domain.set_moderation_policy(key, terms)
                for p in range(posts):
                    post = domain.draft_post(key, admin, [Variant(channel, f"Post {p} du tenant {n}")], None, None,
                                             None, "COLD").value
                    domain.submit_post(post)
                    domain.review_post(post, reviewer, "approve", None, {"internal"})
                    domain.schedule_post(post, datetime.now(UTC) + timedelta(days=1 + p))
                now = datetime.now(UTC)
                domain.ingest_interactions(key, [
                    Incoming(channel, "COMMENT", f"i{i}", f"@fan{i % 17}",
                             "Encore une arnaque bitcoin" if i % 7 == 0 else f"Merci pour le message {i} !",
                             now - timedelta(minutes=interactions - i))
                    for i in range(interactions)])
            seeded.append(Seeded(_gid("Tenant", key), key, email))
            if progress:
                progress(n + 1)
    finally:
        domain.close()
    return seeded


def _gid(type_name: str, raw: str) -> str:
    from api import ids

    return ids.encode(type_name, raw)
