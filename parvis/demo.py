"""Demo data: one agency and three client accounts modelled on the field cases of the design."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.agency import Agency
from domain.app import Parvis
from domain.context import Actor, acting_as, clock
from domain.metrics import Observation
from domain.moderation import BusinessHours, Contact, PolicyTerms, Rule
from domain.people import User
from domain.post import CLIENT, INTERNAL, Variant
from domain.strategy import EditorialLine, Objective, Persona
from parvis import wiring
from parvis.settings import Settings

DEMO_AGENCY = uuid.uuid5(uuid.NAMESPACE_URL, "https://parvis.dev/demo-agency").hex
PASSWORD = "parvis-demo-2026"  # noqa: S105 - the published password of the demo accounts


@dataclass(frozen=True)
class DemoPost:
    """A post of the demo week: its text, where it goes, and how far it got (by `day` days from now, at `hour`)."""

    body: str
    channels: tuple[int, ...]  # indexes into the tenant's channels
    state: str  # draft | in_review | awaiting_client | changes | approved | scheduled | publish_soon | cancelled
    day: int = 0
    hour: int = 10
    temperature: str = "COLD"


@dataclass(frozen=True)
class DemoStrategy:
    positioning: str
    objectives: tuple[tuple[str, str, str, float, float, int], ...]  # title, intent, metric, baseline, target, months
    personas: tuple[tuple[str, str], ...]
    tone: str
    themes: tuple[str, ...]
    hot_share: float
    campaign: tuple[str, str, int, int, float | None]  # name, hashtag, starts in (days), lasts (days), budget


@dataclass(frozen=True)
class DemoTenant:
    name: str
    kind: str
    channels: tuple[tuple[str, str, str], ...]  # platform, handle, mission
    policy: tuple[int, bool, int | None]  # internal approvals, client approval, expiry (hours)
    client_domain: str
    strategy: DemoStrategy
    posts: tuple[DemoPost, ...]


TENANTS = (
    DemoTenant(
        "Croix-Rouge du Littoral",
        "NGO",
        (
            ("FACEBOOK", "@croixrouge.littoral", "Informer, recruter des bénévoles, collecter des dons"),
            ("X", "@CRLittoral", "Alerter et relayer en temps réel"),
            ("INSTAGRAM", "@croixrouge_littoral", "Montrer l'action sur le terrain"),
            ("PINTEREST", "croixrougelittoral", "Gestes de premiers secours en images"),
        ),
        (1, True, 48),
        "croix.demo",
        DemoStrategy(
            "La Croix-Rouge du Littoral forme, secourt et rassemble : chacun peut apprendre les gestes qui sauvent.",
            (
                ("Recruter 300 bénévoles d'ici l'été", "ACTION", "volunteer_signups", 120, 300, 8),
                ("Collecter 50 000 € de dons en ligne", "ACTION", "donations_amount", 18_000, 50_000, 6),
                ("Atteindre 25 000 abonnés Facebook", "AWARENESS", "followers", 19_500, 25_000, 10),
            ),
            (
                ("Étudiante secouriste", "20-25 ans, veut se rendre utile près de chez elle, très Instagram."),
                ("Donateur fidèle", "55 ans et plus, lit Facebook, donne après les catastrophes."),
            ),
            "chaleureux, concret, jamais alarmiste",
            ("premiers secours", "bénévolat", "solidarité locale"),
            0.2,
            ("Journée mondiale des premiers secours", "#GestesQuiSauvent", 2, 14, 1500.0),
        ),
        (
            DemoPost("Samedi, apprenez les gestes qui sauvent en 2 heures. Inscriptions ouvertes !", (0, 1),
                     "publish_soon"),
            DemoPost("Portrait : Léa, 22 ans, secouriste bénévole depuis un an.", (0, 2), "scheduled", day=2),
            DemoPost("Massage cardiaque : 3 gestes à retenir (carrousel).", (2, 3), "awaiting_client", day=3),
            DemoPost("Merci aux 40 bénévoles mobilisés sur le marathon !", (0, 1), "in_review", day=1),
            DemoPost("Appel aux dons : tempête sur la côte, nos équipes sont sur le terrain.", (0, 1),
                     "changes", day=4, temperature="HOT"),
            DemoPost("Quiz du vendredi : que faire face à une brûlure ?", (1,), "draft", day=5),
            DemoPost("Ancienne version du visuel de campagne", (2,), "cancelled", day=6),
        ),
    ),
    DemoTenant(
        "Souffle — ligue contre le tabac",
        "NGO",
        (
            ("FACEBOOK", "@souffle.ligue", "Accompagner celles et ceux qui arrêtent"),
            ("X", "@SouffleLigue", "Porter la Journée mondiale sans tabac"),
            ("NEWSLETTER", "lettre-souffle", "150 000 abonnés : un rendez-vous mensuel"),
            ("FORUM", "forum.souffle", "Entraide entre ex-fumeurs, modérée avec soin"),
        ),
        (0, False, None),
        "souffle.demo",
        DemoStrategy(
            "Souffle accompagne sans juger celles et ceux qui veulent arrêter de fumer, et leurs proches.",
            (
                ("Faire connaître la Journée mondiale sans tabac", "AWARENESS", "impressions", 150_000, 600_000, 4),
                ("Inscrire 2 000 personnes au programme « 30 jours »", "ACTION", "newsletter_subscribers",
                 150_000, 152_000, 5),
                ("Un taux d'engagement de 4 % sur Facebook", "APPRECIATION", "engagement_rate", 2.1, 4.0, 6),
            ),
            (
                ("Fumeur qui veut arrêter", "35-50 ans, a déjà essayé deux fois, craint de grossir."),
                ("Proche inquiet", "Conjoint ou parent, cherche comment aider sans culpabiliser."),
            ),
            "bienveillant, jamais moralisateur, fondé sur les preuves",
            ("arrêt du tabac", "témoignages", "santé"),
            0.1,
            ("Journée mondiale sans tabac", "#SansTabac", 1, 30, 4000.0),
        ),
        (
            DemoPost("Jour 1 sans tabac : ce qui se passe dans votre corps après 24 heures.", (0, 1), "publish_soon"),
            DemoPost("Témoignage : « J'ai arrêté à 52 ans, voici ce qui m'a aidé. »", (0,), "scheduled", day=1),
            DemoPost("La lettre de mai : programme « 30 jours », inscriptions ouvertes.", (2,), "scheduled",
                     day=3, hour=8),
            DemoPost("Forum : rappel des règles de bienveillance.", (3,), "approved", day=2),
            DemoPost("Idée reçue n°3 : « la cigarette électronique, c'est pire ».", (0, 1), "draft", day=4),
        ),
    ),
    DemoTenant(
        "Entraide Crues & Tempêtes",
        "PUBLIC_BODY",
        (
            ("X", "@EntraideCrues", "Relayer offres et demandes d'aide pendant les crues"),
            ("FACEBOOK", "@entraide.crues", "Coordonner les bénévoles"),
            ("BLOG", "blog.entraide-crues", "Bilans et conseils de prévention"),
        ),
        (1, False, 4),
        "entraide.demo",
        DemoStrategy(
            "Entraide Crues & Tempêtes met en relation, pendant les crues, ceux qui offrent de l'aide et ceux qui "
            "en ont besoin.",
            (
                ("Avoir 5 000 abonnés X mobilisables avant l'hiver", "AWARENESS", "followers", 2_800, 5_000, 3),
                ("Relayer 200 offres d'aide vérifiées par crue", "ACTION", "offers_relayed", 0, 200, 12),
            ),
            (
                ("Sinistré", "Sans électricité, consulte X sur son téléphone, a besoin d'informations fiables."),
                ("Voisin solidaire", "Propose un hébergement, une pompe, un véhicule."),
            ),
            "sobre, factuel, rassurant",
            ("prévention", "entraide", "alertes officielles"),
            0.6,
            ("Saison des crues", "#EntraideCrues", 0, 90, None),
        ),
        (
            DemoPost("Vigilance orange crues : comment proposer ou demander de l'aide sur la plateforme.", (0, 1),
                     "publish_soon", temperature="HOT"),
            DemoPost("Prévention : préparer son kit d'urgence en 10 minutes.", (2,), "scheduled", day=2),
            DemoPost("Bilan de la crue de mars : 180 offres relayées, merci !", (0, 1), "in_review", day=3),
            DemoPost("Fil d'alerte (brouillon prêt à l'emploi)", (0,), "draft", day=1, temperature="HOT"),
        ),
    ),
)


def load_demo(settings: Settings) -> str:
    """Load the demo agency once (idempotent) and return the text listing the demo logins."""
    domain = wiring.domain(settings)
    try:
        if not domain.exists(Agency.create_id(DEMO_AGENCY)):
            _load(domain)
    finally:
        domain.close()
    return _banner()


def _load(domain: Parvis) -> None:
    agency_key, admin_id = domain.register_agency(
        "Agence Parvis (démo)", "admin@demo.parvis", PASSWORD, "Alice Admin", agency_key=DEMO_AGENCY
    ).value
    keys: list[tuple[str, list[str]]] = []
    with acting_as(Actor(id=admin_id, role="AGENCY_ADMIN", reason="demo data")):
        domain.grant_membership(agency_key, "auditor@demo.parvis", "AUDITOR", None, "Aude Auditrice", PASSWORD)
        for tenant in TENANTS:
            key = domain.create_tenant(agency_key, tenant.name, tenant.kind, "Europe/Paris", "fr-FR").value
            domain.set_approval_policy(key, *tenant.policy)
            channels = [
                domain.connect_channel(key, platform, handle, mission, {"token": f"demo-{uuid.uuid4().hex[:8]}"}).value
                for platform, handle, mission in tenant.channels
            ]
            keys.append((key, channels))
            domain.grant_membership(agency_key, "cm@demo.parvis", "COMMUNITY_MANAGER", key, "Camille CM", PASSWORD)
            domain.grant_membership(agency_key, "cm2@demo.parvis", "COMMUNITY_MANAGER", key, "Corentin CM", PASSWORD)
            d = tenant.client_domain
            domain.grant_membership(agency_key, f"admin@{d}", "CLIENT_ADMIN", key, f"Admin {d}", PASSWORD)
            domain.grant_membership(agency_key, f"reviewer@{d}", "CLIENT_REVIEWER", key, f"Relecteur {d}", PASSWORD)
            domain.grant_membership(agency_key, f"viewer@{d}", "CLIENT_VIEWER", key, f"Lecteur {d}", PASSWORD)
    for tenant, (key, channels) in zip(TENANTS, keys, strict=True):
        _publishing(domain, agency_key, key, channels, tenant)
        with acting_as(Actor(id=_user(agency_key, "cm@demo.parvis"), role="COMMUNITY_MANAGER", on_behalf_of=key,
                             reason="règles de modération de départ")):
            domain.set_moderation_policy(key, _moderation_terms(tenant))


def _moderation_terms(tenant: DemoTenant) -> PolicyTerms:
    """Scams hidden, spam marked, and targets that fit the tenant (the flood platform answers fast)."""
    rules = (
        Rule("Arnaques", "HIDE", ("arnaque", "bitcoin", "crypto", "gagnez", "giveaway")),
        Rule("Spam probable", "MARK_SPAM", min_spam_score=0.7),
    )
    if tenant.client_domain == "entraide.demo":
        return PolicyTerms(rules, 30 * 60, 5 * 60, None,
                           (Contact("Cellule de crise préfecture", "crise@prefecture.demo"),))
    hours = BusinessHours((0, 1, 2, 3, 4), "09:00", "18:00")
    if tenant.client_domain == "souffle.demo":
        return PolicyTerms(rules, 4 * 3600, 30 * 60, hours, (Contact("Dr Martin, tabacologue", "expert@souffle.demo"),))
    return PolicyTerms(rules, 2 * 3600, 20 * 60, hours, (Contact("Responsable communication", "com@croix.demo"),))


def _user(agency_key: str, email: str) -> str:
    return User.create_id(agency_key, email)


def _publishing(domain: Parvis, agency_key: str, key: str, channels: list[str], tenant: DemoTenant) -> None:
    """The tenant's strategy, its campaign, and a week of posts in every state of the approval chain."""
    cm, cm2 = _user(agency_key, "cm@demo.parvis"), _user(agency_key, "cm2@demo.parvis")
    reviewer = _user(agency_key, f"reviewer@{tenant.client_domain}")
    plan = tenant.strategy
    now = domain.now()
    staff = Actor(id=cm, role="COMMUNITY_MANAGER", on_behalf_of=key)
    month_ago = now - timedelta(days=30)
    objectives = []
    for title, intent, metric, planned_baseline, planned_target, months in plan.objectives:
        # The sandbox decides how many followers the channels have: the objective starts from there.
        baseline, target = (followers_objective(channels, now) if metric == "followers"
                            else (planned_baseline, planned_target))
        deadline = month_ago + timedelta(days=30 * months)
        objectives.append(Objective(title, intent, metric, target, None, baseline, deadline))
    # The strategy took effect a month ago, so that the demo's month of metrics counts toward its objectives.
    with acting_as(replace(staff, reason="stratégie de l'année")), clock(lambda: month_ago):
        domain.revise_strategy(
            key, "stratégie de l'année", plan.positioning,
            objectives,
            [Persona(name, description, tuple(channels[:2])) for name, description in plan.personas],
            EditorialLine(plan.tone, plan.themes, plan.hot_share, tuple((c, 3.0) for c in channels)),
        )
        objective_ids = list(domain.strategy(key).objective_ids)  # type: ignore[union-attr]
        name, hashtag, starts_in, lasts, budget = plan.campaign
        start = now + timedelta(days=starts_in)
        campaign = domain.create_campaign(key, name, hashtag, start, start + timedelta(days=lasts),
                                          objective_ids[:2], budget).value
    with acting_as(staff):
        _month_of_metrics(domain, key, channels, plan, now)
        # The month's report, made by the workers once they start (then listed in `tenant { reports }`).
        domain.request_report(key, month_ago, now, requested_by=cm)
    zone = ZoneInfo("Europe/Paris")
    for i, item in enumerate(tenant.posts):
        variants = [Variant(channels[c], f"{item.body} {hashtag}") for c in item.channels]
        with acting_as(staff):
            post = domain.draft_post(key, cm, variants, campaign, objective_ids[i % len(objective_ids)], None,
                                     item.temperature).value
        when = (now + timedelta(seconds=45 + 30 * i) if item.state == "publish_soon" else
                datetime.combine((now + timedelta(days=item.day)).astimezone(zone).date(), time(item.hour),
                                 tzinfo=zone))
        _advance(domain, post, item.state, when, staff, Actor(id=cm2, role="COMMUNITY_MANAGER", on_behalf_of=key),
                 Actor(id=reviewer, role="CLIENT_REVIEWER"))


def _month_of_metrics(domain: Parvis, key: str, channels: list[str], plan: DemoStrategy, now: datetime) -> None:
    """Thirty days of daily figures, as the sandbox would have reported them: each channel's followers growing
    to what the sandbox counts today, and the flows the objectives count (sign-ups, donations, impressions,
    offers relayed)."""
    from workers.connectors.base import ChannelRef
    from workers.connectors.sandbox import SandboxConnector

    rng = random.Random(key)  # noqa: S311 - demo figures, not secrets
    sandbox = SandboxConnector(clock=lambda: now)
    today = {c: sandbox.fetch_metrics(ChannelRef(c, "SANDBOX", "", {}), [])[-1]["followers"] for c in channels}
    daily = {"volunteer_signups": (1, 4), "donations_amount": (150, 700), "impressions": (2000, 12000),
             "offers_relayed": (0, 6)}
    flows = [m for _, _, m, _, _, _ in plan.objectives if m in daily]
    subscribers = next((b for _, _, m, b, _, _ in plan.objectives if m == "newsletter_subscribers"), None)
    observations = []
    for day in range(30, 0, -1):
        at = now - timedelta(days=day)
        for channel in channels:
            level = today[channel] * (1 - 0.004 * day)  # about 12 % growth over the month
            observations.append(Observation(channel, "followers", round(level), at, source="sandbox"))
        for metric in flows:
            low, high = daily[metric]
            observations.append(Observation(channels[0], metric, rng.randint(low, high), at, source="sandbox"))
        if subscribers is not None:
            observations.append(Observation(channels[-2], "newsletter_subscribers",
                                            subscribers + 60 * (30 - day), at, source="sandbox"))
    domain.record_metrics(key, observations)


def followers_objective(channels: list[str], now: datetime) -> tuple[float, float]:
    """(baseline, target) of a followers objective: the channels' total a month ago, and 30 % more."""
    from workers.connectors.base import ChannelRef
    from workers.connectors.sandbox import SandboxConnector

    sandbox = SandboxConnector(clock=lambda: now)
    total = sum(sandbox.fetch_metrics(ChannelRef(c, "SANDBOX", "", {}), [])[-1]["followers"] for c in channels)
    baseline = round(total * (1 - 0.004 * 30))
    return float(baseline), float(round(baseline * 1.3, -2))


def _advance(domain: Parvis, post: str, state: str, when: datetime, author: Actor, colleague: Actor,
             client: Actor) -> None:
    """Take a drafted post as far as `state`, each step by the person who would take it."""
    if state == "draft":
        return
    if state == "cancelled":
        with acting_as(replace(author, reason="visuel remplacé")):
            domain.cancel_post(post)
        return
    with acting_as(author):
        domain.submit_post(post)
    reviewers = {"IN_REVIEW": (colleague, INTERNAL), "AWAITING_CLIENT": (client, CLIENT)}
    stop_at = {"in_review": "IN_REVIEW", "awaiting_client": "AWAITING_CLIENT"}.get(state)
    while (status := domain.post(post).status) in reviewers and status != stop_at:
        actor, step = reviewers[status]
        with acting_as(actor):
            if state == "changes":
                domain.review_post(post, actor.id, "request_changes", "Pouvez-vous adoucir le ton ?", {step})
                return
            domain.review_post(post, actor.id, "approve", "Validé", {step})
    if state in ("scheduled", "publish_soon"):
        with acting_as(author):
            domain.schedule_post(post, when)


def _banner() -> str:
    lines = [
        "Demo logins (password for all: " + PASSWORD + "):",
        "  admin@demo.parvis        AGENCY_ADMIN (all tenants)",
        "  cm@demo.parvis           COMMUNITY_MANAGER (the three tenants)",
        "  cm2@demo.parvis          COMMUNITY_MANAGER (a second one, for internal approvals)",
        "  auditor@demo.parvis      AUDITOR (all tenants)",
    ]
    for tenant in TENANTS:
        d = tenant.client_domain
        lines.append(f"  admin@{d:<19} CLIENT_ADMIN of {tenant.name}  (also reviewer@{d}, viewer@{d})")
    return "\n".join(lines)
