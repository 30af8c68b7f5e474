"""Demo data: one agency and three client accounts modelled on the field cases of the design."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from domain.agency import Agency
from domain.app import Parvis
from domain.context import Actor, acting_as
from parvis import wiring
from parvis.settings import Settings

DEMO_AGENCY = uuid.uuid5(uuid.NAMESPACE_URL, "https://parvis.dev/demo-agency").hex
PASSWORD = "parvis-demo-2026"  # noqa: S105 - the published password of the demo accounts


@dataclass(frozen=True)
class DemoTenant:
    name: str
    kind: str
    channels: tuple[tuple[str, str, str], ...]  # platform, handle, mission
    policy: tuple[int, bool, int | None]  # internal approvals, client approval, expiry (hours)
    client_domain: str


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
    with acting_as(Actor(id=admin_id, role="AGENCY_ADMIN", reason="demo data")):
        domain.grant_membership(agency_key, "auditor@demo.parvis", "AUDITOR", None, "Aude Auditrice", PASSWORD)
        for tenant in TENANTS:
            key = domain.create_tenant(agency_key, tenant.name, tenant.kind, "Europe/Paris", "fr-FR").value
            domain.set_approval_policy(key, *tenant.policy)
            for platform, handle, mission in tenant.channels:
                domain.connect_channel(key, platform, handle, mission, {"token": f"demo-{uuid.uuid4().hex[:8]}"})
            domain.grant_membership(agency_key, "cm@demo.parvis", "COMMUNITY_MANAGER", key, "Camille CM", PASSWORD)
            domain.grant_membership(agency_key, "cm2@demo.parvis", "COMMUNITY_MANAGER", key, "Corentin CM", PASSWORD)
            d = tenant.client_domain
            domain.grant_membership(agency_key, f"admin@{d}", "CLIENT_ADMIN", key, f"Admin {d}", PASSWORD)
            domain.grant_membership(agency_key, f"reviewer@{d}", "CLIENT_REVIEWER", key, f"Relecteur {d}", PASSWORD)
            domain.grant_membership(agency_key, f"viewer@{d}", "CLIENT_VIEWER", key, f"Lecteur {d}", PASSWORD)


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
