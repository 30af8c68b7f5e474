"""Benchmark data: agencies and tenants with a realistic mix of events, built in memory and saved in batches.

Each tenant gets what an agency's client account accumulates over a month: channels and their credential checks,
a strategy revised once, a moderation policy with a keyword rule, campaigns, posts along their whole lifecycle
(approvals, changes requested, scheduling, publishing), incoming interactions decided by the rule, by a person or
waiting in the queue, the workers' analyses, and a metrics pull per day. The aggregates are the domain's own and
change through their own methods (so every invariant and every event is the product's), but many tenants are
saved in one `save()` call: one transaction and one table lock per few thousand events instead of one per event.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from tests.support import PASSWORD, SECRET

_TEXTS = (
    "Merci pour ce message, je partage !", "Comment puis-je devenir bénévole ?", "Super initiative, bravo.",
    "Je ne suis pas d'accord avec cette campagne.", "Where can I donate?", "Thanks for the update!",
    "Encore une arnaque bitcoin, cliquez ici", "Quelle honte, personne ne répond aux messages.",
    "Je propose mon aide pour samedi : j'ai une camionnette.", "Great work, keep going", "Des infos sur la collecte ?",
    "Lien vers une arnaque : gagnez 1000 euros", "Bonjour, j'ai une question sur mon don.", "Love this!",
)
_REPLIES = ("Merci beaucoup !", "Nous vous répondons en message privé.", "Toutes les infos sont sur notre site.")
_KINDS = ("COMMENT",) * 12 + ("REPLY",) * 3 + ("MENTION",) * 2 + ("DIRECT_MESSAGE",) * 2 + ("REVIEW", "OFFER")
_PLATFORMS = ("FACEBOOK", "X", "INSTAGRAM", "LINKEDIN", "MASTODON", "NEWSLETTER")


@dataclass(frozen=True)
class Seeded:
    tenant_id: str  # global id, as the API shows it
    tenant_key: str
    admin_email: str


@dataclass(frozen=True)
class Staff:
    """An agency and the people who act in its tenants' histories."""

    agency_key: str
    admin_id: str
    admin_email: str
    reviewer_id: str
    client_id: str

    @property
    def reviewer_email(self) -> str:
        """The community manager's address (who signs in only once given a password)."""
        return f"cm-{self.admin_email}"


@dataclass(frozen=True)
class Mix:
    """What one tenant gets: about `setup` events of set-up, ~7 per post, ~2.2 per interaction, one per metric day."""

    channels: int = 3
    posts: int = 47
    interactions: int = 280
    metric_days: int = 30

    @classmethod
    def of(cls, events: int) -> Mix:
        """A mix of about `events` events (at least the set-up, about 20)."""
        days = max(1, min(30, events // 33))
        rest = max(0, events - 20 - days)
        return cls(channels=3 if events >= 100 else 1, posts=round(rest * 0.35 / 7),
                   interactions=round(rest * 0.65 / 2.2), metric_days=days)


def settings_for(database_url: str, redis_url: str) -> Any:
    from parvis.settings import Settings

    return Settings(env="test", database_url=database_url, redis_url=redis_url, secret_key=SECRET,
                    data_dir=Path(tempfile.gettempdir()) / "parvis-bench", db_pool_size=4)


def migrate(database_url: str, redis_url: str) -> None:
    from parvis.cli import _migrate

    asyncio.run(_migrate(settings_for(database_url, redis_url)))


def head(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return int(conn.execute("SELECT coalesce(max(notification_id), 0) FROM parvis_events").fetchone()[0])  # type: ignore[index]


def caught_up(database_url: str, within: float = 1800, progress: Callable[[int, int], None] | None = None) -> None:
    """Wait until every read model has reached the head of the event store."""
    from parvis.wiring import read_model_names

    names = read_model_names()
    deadline = time.monotonic() + within
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            top = conn.execute("SELECT coalesce(max(notification_id), 0) FROM parvis_events").fetchone()[0]  # type: ignore[index]
            rows = conn.execute("SELECT position FROM parvis.tracking WHERE projection = ANY(%s)", (names,)).fetchall()
            lowest = min((r[0] for r in rows), default=0)
            if progress:
                progress(lowest, top)
            if len(rows) == len(names) and lowest >= top:
                return
            time.sleep(0.2)
    raise TimeoutError("the read models did not catch up")


class Generator:
    """Builds tenants in memory through the domain's aggregates and saves them many at a time."""

    def __init__(self, settings: Any, *, seed: int = 7, batch_events: int = 4000) -> None:
        from parvis import wiring

        self.app = wiring.domain(settings)
        self._conn = psycopg.connect(settings.database_url, autocommit=True)
        self.rng = random.Random(seed)  # noqa: S311 - benchmark data, not secrets
        self.batch_events = batch_events
        self.events = 0
        self._pending: list[Any] = []
        self._pending_events = 0

    def close(self) -> None:
        self.flush()
        self._conn.close()
        self.app.close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ saving
    def _add(self, *aggregates: Any) -> None:
        for aggregate in aggregates:
            self._pending.append(aggregate)
            self._pending_events += len(aggregate.pending_events)

    def flush(self) -> None:
        """Store the pending aggregates' events: the library's own mapper makes the stored events (the same bytes
        `save()` would write), and one COPY writes them, under the table lock the library takes for every insert
        (so positions are issued in commit order) and with the NOTIFY that wakes the projector."""
        if not self._pending:
            return
        stored = [self.app.mapper.to_stored_event(e) for a in self._pending for e in a.collect_events()]
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("LOCK TABLE public.parvis_events IN EXCLUSIVE MODE")
            with cur.copy("COPY public.parvis_events (originator_id, originator_version, topic, state) "
                          "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text", "int8", "text", "bytea"])
                for e in stored:
                    copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))
            cur.execute("NOTIFY parvis_events")
        self.events += len(stored)
        self._pending, self._pending_events = [], 0

    # ------------------------------------------------------------------ agencies and tenants
    def agency(self, name: str) -> Staff:
        """An agency with its admin (who signs in), a community manager and a client reviewer."""
        from domain.context import Actor, acting_as
        from domain.people import Membership, User

        email = f"{name.lower().replace(' ', '-')}-{uuid.uuid4().hex[:6]}@bench.test"
        agency_key, admin = self.app.register_agency(f"Agence {name}", email, PASSWORD).value
        with acting_as(Actor(id=admin, role="AGENCY_ADMIN")):
            reviewer = User(agency_key=agency_key, email=f"cm-{email}", display_name="Community manager",
                            password=None)
            grant = Membership(user_id=reviewer.id, role="COMMUNITY_MANAGER", tenant_key=None, agency_key=agency_key)
            client = User(agency_key=agency_key, email=f"client-{email}", display_name="Client", password=None)
            self.app.save(reviewer, grant, client)
        return Staff(agency_key, admin, email, reviewer.id, client.id)

    def tenants(self, staff: Staff, count: int, mix: Mix, prefix: str,
                progress: Callable[[int], None] | None = None) -> list[Seeded]:
        out = []
        for n in range(count):
            key = self.tenant(staff, mix, f"{prefix} {n}", client_approval=n % 3 == 0)
            out.append(Seeded(_gid("Tenant", key), key, staff.admin_email))
            if self._pending_events >= self.batch_events:
                self.flush()
            if progress:
                progress(n + 1)
        self.flush()
        return out

    def tenant(self, staff: Staff, mix: Mix, name: str, *, client_approval: bool) -> str:
        """One tenant's month (added to the pending batch); returns its key."""
        from domain.base import new_key
        from domain.context import Actor, acting_as, clock

        key = new_key()
        now = datetime.now(UTC).replace(microsecond=0)
        start = now - timedelta(days=max(mix.metric_days, 2))
        sim = [start]
        with clock(lambda: sim[0]), acting_as(Actor(id=staff.admin_id, role="AGENCY_ADMIN")):
            world = _World(self, staff, key, sim, now)
            world.setup(name, mix, client_approval)
            for day in range(mix.metric_days):
                sim[0] = start + timedelta(days=day, hours=23)
                world.metrics(day)
            world.posts(mix.posts)
            world.interactions(mix.interactions)
        return key


class _World:
    """One tenant being built: its aggregates, its clock, its people."""

    def __init__(self, gen: Generator, staff: Staff, key: str, sim: list[datetime], now: datetime) -> None:
        self.gen, self.staff, self.key, self.sim, self.now = gen, staff, key, sim, now
        self.rng = gen.rng
        self.channels: list[Any] = []
        self.published: list[Any] = []
        self.follower_base = self.rng.randint(2000, 60000)

    def tick(self, minutes: float) -> datetime:
        self.sim[0] += timedelta(minutes=minutes)
        return self.sim[0]

    @contextmanager
    def person(self, user_id: str, role: str) -> Iterator[None]:
        from domain.context import Actor, acting_as

        with acting_as(Actor(id=user_id, role=role)):
            yield

    # ------------------------------------------------------------------ set-up
    def setup(self, name: str, mix: Mix, client_approval: bool) -> None:
        from domain.campaign import Campaign
        from domain.channel import Channel, ChannelHealth
        from domain.moderation import Contact, ModerationPolicy, PolicyTerms, Rule
        from domain.people import Membership
        from domain.strategy import EditorialLine, Objective, Persona, Strategy
        from domain.tenant import ApprovalPolicy, Tenant

        key, rng = self.key, self.rng
        tenant = Tenant(tenant_key=key, agency_key=self.staff.agency_key, name=name, kind=rng.choice(("NGO", "BRAND")),
                        timezone="Europe/Paris", locale="fr-FR")
        tenant.set_approval_policy(ApprovalPolicy(1, client_approval, None))
        self.tenant = tenant
        client = Membership(user_id=self.staff.client_id, role="CLIENT_REVIEWER", tenant_key=key,
                            agency_key=self.staff.agency_key)
        for i in range(mix.channels):
            self.tick(5)
            channel = Channel(tenant_key=key, platform=_PLATFORMS[i % len(_PLATFORMS)], handle=f"@{key[:8]}{i}",
                              mission="Informer et mobiliser", connector="sandbox", credentials=None)
            channel.record_health(ChannelHealth.OK, None, channel.check_id())
            self.channels.append(channel)
        strategy = Strategy(tenant_key=key)
        objectives = [Objective("Abonnés", "AWARENESS", "followers", self.follower_base * 1.2,
                                baseline=float(self.follower_base)),
                      Objective("Bénévoles", "ACTION", "volunteer_signups", 300, baseline=100),
                      Objective("Engagement", "APPRECIATION", "engagements", 5000, channel_id=self.channels[0].id)]
        personas = [Persona("Donateurs", "Particuliers fidèles", (self.channels[0].id,))]
        line = EditorialLine("chaleureux", ("solidarité", "terrain"), 0.3, ((self.channels[0].id, 5.0),))
        strategy.revise("lancement", "Proche du terrain", objectives[:2], personas, line)
        self.tick(60 * 24)
        strategy.revise("objectif d'engagement", "Proche du terrain", objectives, personas, line)
        self.strategy = strategy
        policy = ModerationPolicy(tenant_key=key)
        policy.set(PolicyTerms((Rule("Arnaques", "HIDE", ("arnaque", "bitcoin")),), 4 * 3600, 30 * 60, None,
                               (Contact("Expert santé", "expert@bench.test"),)))
        self.terms, self.policy = policy.terms, policy
        campaigns = [Campaign(tenant_key=key, name=f"Campagne {c}", hashtag=f"#Bench{c}", starts_at=self.now,
                              ends_at=self.now + timedelta(days=30), objective_ids=[strategy.objective_ids[0]],
                              budget=None) for c in range(2)]
        self.campaign_ids = [c.id for c in campaigns]
        self.gen._add(tenant, client, *self.channels, strategy, policy, *campaigns)

    # ------------------------------------------------------------------ posts
    def posts(self, count: int) -> None:
        """Posts along the whole lifecycle: published, scheduled, sent back, waiting, drafts, cancelled."""
        from domain.post import Post, PostStatus

        rng = self.rng
        for p in range(count):
            self.sim[0] = self.now - timedelta(days=rng.uniform(3, 28))
            channels = rng.sample(self.channels, k=min(len(self.channels), rng.choice((1, 1, 2))))
            variants = [{"channel_id": c.id, "body": f"Post {p} : {rng.choice(_TEXTS)}", "media_urls": []}
                        for c in channels]
            post = Post(tenant_key=self.key, author_id=self.staff.admin_id, variants=variants,
                        campaign_id=rng.choice((None, *self.campaign_ids)), objective_id=None, persona_id=None,
                        temperature="HOT" if rng.random() < 0.2 else "COLD")
            roll = rng.random()
            if roll < 0.05:
                self.gen._add(post)  # a draft
                continue
            self.tick(30)
            post.submit(self.tenant.approval_policy, self.tenant.approval_policy_version)
            if roll < 0.10:
                self.gen._add(post)  # waiting for review
                continue
            if roll < 0.20:
                with self.person(self.staff.reviewer_id, "COMMUNITY_MANAGER"):
                    self.tick(60)
                    post.request_changes(self.staff.reviewer_id, "Plus court, s'il vous plaît")
                self.tick(20)
                post.edit([{**v, "body": v["body"][:60]} for v in variants], None)
                post.submit(self.tenant.approval_policy, self.tenant.approval_policy_version)
            if roll > 0.97:
                with self.person(self.staff.reviewer_id, "COMMUNITY_MANAGER"):
                    post.reject(self.staff.reviewer_id, "Hors ligne éditoriale")
                self.gen._add(post)
                continue
            self.approve(post)
            if post.status != PostStatus.APPROVED.value:
                self.gen._add(post)
                continue
            if roll < 0.55:
                self.publish(post)
            else:
                at = self.now + timedelta(days=rng.uniform(0.5, 14))
                post.schedule(at.replace(second=0), self.sim[0])
            self.gen._add(post)

    def approve(self, post: Any) -> None:
        with self.person(self.staff.reviewer_id, "COMMUNITY_MANAGER"):
            self.tick(45)
            post.approve(self.staff.reviewer_id, None)
        if post.status == "AWAITING_CLIENT" and self.rng.random() < 0.9:
            with self.person(self.staff.client_id, "CLIENT_REVIEWER"):
                self.tick(120)
                post.approve(self.staff.client_id, "OK pour nous")

    def publish(self, post: Any) -> None:
        at = self.sim[0] + timedelta(hours=self.rng.uniform(2, 48))
        post.schedule(at, self.sim[0])
        self.sim[0] = at
        post.start_publishing()
        for v in post.variants:
            self.tick(0.1)
            post.record_published(v["channel_id"], uuid.uuid4().hex[:16], f"https://sandbox.test/{uuid.uuid4().hex[:8]}",
                                  self.sim[0])
        self.published.append(post)

    # ------------------------------------------------------------------ interactions
    def interactions(self, count: int) -> None:
        """Incoming items: the rule hides the scams, people decide some, the analysis reads half, the rest waits."""
        from domain.interaction import Interaction
        from domain.moderation import Decision

        rng, key, staff = self.rng, self.key, self.staff
        personal = self.gen.app.personal
        authors = [f"@fan{i}" for i in range(max(3, count // 6))]
        items = []
        for i in range(count):
            author = rng.choice(authors)
            items.append((f"x{i}-{uuid.uuid4().hex[:8]}", author, rng.choice(_TEXTS),
                          self.now - timedelta(minutes=rng.uniform(1, 60 * 24 * 28))))
        refs = [personal.author_ref(key, author) for _, author, _, _ in items]
        sealed = personal.seal(key, [pair for ref, (_, author, text, _) in zip(refs, items, strict=True)
                                     for pair in ((ref, author), (ref, text))])
        strategy_version = self.strategy.current
        for n, (external_id, _, text, received_at) in enumerate(items):
            channel = rng.choice(self.channels)
            self.sim[0] = received_at
            reply_to = rng.choice(self.published).id if self.published and rng.random() < 0.3 else None
            item = Interaction(tenant_key=key, channel_id=channel.id, kind=rng.choice(_KINDS), external_id=external_id,
                               author_ref=refs[n], author=sealed[2 * n], text=sealed[2 * n + 1],
                               received_at=received_at, in_reply_to=reply_to,
                               due_by=self.terms.due_by(received_at, False, "Europe/Paris"),
                               policy_version=self.policy.number)
            item.apply_rules(self.terms, text, self.policy.number, strategy_version)
            if rng.random() < 0.5:
                self.tick(2)
                item.record_analysis("fr", rng.choice(("NEGATIVE", "NEUTRAL", "POSITIVE")), rng.random() * 0.3)
            roll = rng.random()
            if not item.decisions and received_at < self.now - timedelta(hours=6) and roll < 0.7:
                with self.person(staff.reviewer_id, "COMMUNITY_MANAGER"):
                    self.tick(rng.uniform(5, 300))
                    if roll < 0.1:
                        item.assign(staff.reviewer_id)
                    verdict = rng.choice((Decision.APPROVE, Decision.APPROVE, Decision.REPLY, Decision.HIDE,
                                          Decision.DISMISS, Decision.ESCALATE))
                    reply = rng.choice(_REPLIES) if verdict == Decision.REPLY else None
                    contact = "expert@bench.test" if verdict == Decision.ESCALATE else None
                    item.decide(verdict, staff.reviewer_id, "selon la ligne éditoriale", reply, contact,
                                self.policy.number, strategy_version)
                    if roll < 0.02:
                        item.overturn(Decision.APPROVE, staff.reviewer_id, "faux positif", None, None,
                                      self.policy.number, strategy_version)
            elif roll > 0.9 and not item.decisions:
                with self.person(staff.reviewer_id, "COMMUNITY_MANAGER"):
                    item.assign(staff.reviewer_id)
            self.gen._add(item)

    # ------------------------------------------------------------------ metrics
    def metrics(self, day: int) -> None:
        """The daily pull: followers (a level) and impressions, engagements, sign-ups (flows) per channel."""
        from domain.metrics import MetricBatch

        rng = self.rng
        at = self.sim[0].isoformat()
        rows = []
        for c in self.channels:
            rows.append({"channel_id": c.id, "post_id": None, "metric": "followers",
                         "value": float(self.follower_base + day * rng.randint(5, 40)), "at": at, "source": "sandbox"})
            for metric, high in (("impressions", 5000), ("engagements", 300), ("volunteer_signups", 4)):
                rows.append({"channel_id": c.id, "post_id": None, "metric": metric,
                             "value": float(rng.randint(0, high)), "at": at, "source": "sandbox"})
        self.gen._add(MetricBatch(tenant_key=self.key, observations=rows))


def _gid(type_name: str, raw: str) -> str:
    from api import ids

    return ids.encode(type_name, raw)
