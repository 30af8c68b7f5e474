"""The moderation domain on the library's in-memory store, with a fake key store (unit tests only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from domain.app import Parvis
from domain.context import Actor, acting_as
from domain.errors import InvalidInput, InvalidTransition
from domain.inbox import Incoming
from domain.moderation import BusinessHours, Contact, Facts, PolicyTerms, Rule

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday


class FakeSecrets:
    def seal(self, plaintext: str) -> str:
        return "sealed:" + plaintext

    def hash_password(self, password: str) -> str:
        return "hashed"


class FakeKeys:
    """Per-author 'keys' in a dict: erasing one makes its values unreadable, as the real store does."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], str] = {}

    def author_ref(self, tenant_key: str, handle: str) -> str:
        return f"ref-{handle.lower()}"

    def seal(self, tenant_key: str, items: list[tuple[str, str]]) -> list[str]:
        for ref, _ in items:
            self.keys.setdefault((tenant_key, ref), f"k{len(self.keys)}")
        return [f"{self.keys[(tenant_key, ref)]}:{text[::-1]}" for ref, text in items]

    def open(self, tenant_key: str, items: list[tuple[str, str]]) -> list[str | None]:
        out: list[str | None] = []
        for ref, sealed in items:
            key = self.keys.get((tenant_key, ref))
            out.append(sealed.split(":", 1)[1][::-1] if key and sealed.startswith(key + ":") else None)
        return out

    def erase(self, tenant_key: str, author_ref: str) -> None:
        self.keys.pop((tenant_key, author_ref), None)


@pytest.fixture
def world() -> Iterator[tuple[Parvis, str, str, FakeKeys]]:
    keys = FakeKeys()
    app = Parvis(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, secrets=FakeSecrets(), clock=lambda: NOW,
                 personal=keys)
    with acting_as(Actor(id="tester", role="AGENCY_ADMIN")):
        agency = app.register_agency("Agence", "admin@agence.test", "correct horse battery").value[0]
        tenant = app.create_tenant(agency, "Entraide", "PUBLIC_BODY", "Europe/Paris").value
        channel = app.connect_channel(tenant, "SANDBOX", "@entraide", None, None).value
        yield app, tenant, channel, keys


def incoming(channel: str, external: str, text: str, author: str = "@lea", at: datetime = NOW) -> Incoming:
    return Incoming(channel, "COMMENT", external, author, text, at)


def test_a_rule_needs_a_condition_and_an_action_a_rule_may_take() -> None:
    with pytest.raises(InvalidInput) as no_condition:
        PolicyTerms((Rule("Tout", "HIDE"),)).check("t")
    assert no_condition.value.field == ("rules", "0")
    with pytest.raises(InvalidInput) as reply:
        PolicyTerms((Rule("Répondre", "REPLY", ("aide",)),)).check("t")
    assert reply.value.field == ("rules", "0", "action")
    with pytest.raises(InvalidInput) as target:
        PolicyTerms(response_target_seconds=0).check("t")
    assert target.value.field == ("responseTargetMinutes",)


def test_keywords_match_whole_words_whatever_the_case() -> None:
    rule = Rule("Arnaques", "HIDE", ("arnaque",)).checked("t", 0)
    assert rule.matches(Facts("Une ARNAQUE de plus", "c", "COMMENT")) is True
    assert rule.matches(Facts("Les arnaqueurs sont partout", "c", "COMMENT")) is False


def test_a_rule_on_sentiment_waits_for_the_analysis_then_decides() -> None:
    rule = Rule("Colère", "HIDE", max_sentiment="NEGATIVE").checked("t", 0)
    assert rule.matches(Facts("texte", "c", "COMMENT")) is None
    assert rule.matches(Facts("texte", "c", "COMMENT", sentiment="NEGATIVE")) is True
    assert rule.matches(Facts("texte", "c", "COMMENT", sentiment="NEUTRAL")) is False


def test_business_hours_count_only_working_time() -> None:
    hours = BusinessHours((0, 1, 2, 3, 4), "09:00", "18:00")
    terms = PolicyTerms(response_target_seconds=2 * 3600, business_hours=hours)
    friday_evening = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)  # 18:00 in Paris
    # Received at 18:00 on Friday: the two working hours are Monday 09:00-11:00, Paris time.
    assert terms.due_by(friday_evening, crisis=False, tz="Europe/Paris") == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    # In a crisis the target is counted around the clock.
    crisis = terms.due_by(friday_evening, crisis=True, tz="Europe/Paris")
    assert crisis == friday_evening + timedelta(seconds=terms.crisis_response_target_seconds)


def test_ingestion_applies_rules_and_the_rule_is_the_author_of_its_decision(
    world: tuple[Parvis, str, str, FakeKeys]
) -> None:
    app, tenant, channel, _ = world
    app.set_moderation_policy(tenant, PolicyTerms((Rule("Arnaques", "HIDE", ("bitcoin",)),)))
    accepted, duplicates = app.ingest_interactions(tenant, [
        incoming(channel, "1", "Gagnez des bitcoin"), incoming(channel, "2", "Merci !"),
        incoming(channel, "1", "Gagnez des bitcoin")]).value
    assert (accepted, duplicates) == (2, 1)
    again = app.ingest_interactions(tenant, [incoming(channel, "2", "Merci !")]).value
    assert again == (0, 1)

    scam = app.interaction(_id(app, tenant, channel, "1"))
    (decision,) = scam.decisions
    assert (decision["decision"], decision["by"], decision["policy_version"]) == ("HIDE", None, 1)
    decided = next(e for e in app.events.get(scam.id) if type(e).__name__ == "Decided")
    assert decided.meta["actor"] == f"rule:{decision['rule_id']}@1"
    assert decided.meta["causation_id"] is not None


def test_a_decided_interaction_is_changed_only_by_an_overturn_that_keeps_both(
    world: tuple[Parvis, str, str, FakeKeys]
) -> None:
    app, tenant, channel, _ = world
    app.set_moderation_policy(tenant, PolicyTerms(contacts=(Contact("Préfecture", "crise@pref.test"),)))
    app.ingest_interactions(tenant, [incoming(channel, "q", "Des nouvelles de la digue ?")])
    iid = _id(app, tenant, channel, "q")
    app.decide_interaction(iid, "user-1", "DISMISS", "hors sujet", None, None)
    with pytest.raises(InvalidTransition):
        app.decide_interaction(iid, "user-1", "HIDE", None, None, None)
    with pytest.raises(InvalidInput) as unknown:
        app.overturn_decision(iid, "user-2", "ESCALATE", "à voir", escalate_to="nobody@nowhere.test")
    assert unknown.value.field == ("escalateTo",)
    app.overturn_decision(iid, "user-2", "ESCALATE", "à voir", escalate_to="crise@pref.test")
    decisions = app.interaction(iid).decisions
    assert [(d["decision"], d["overturned"]) for d in decisions] == [("DISMISS", True), ("ESCALATE", False)]


def test_a_breach_needs_the_due_time_passed_and_no_answer(world: tuple[Parvis, str, str, FakeKeys]) -> None:
    app, tenant, channel, _ = world
    early = NOW - timedelta(hours=10)
    app.ingest_interactions(tenant, [incoming(channel, "old", "Allô ?", at=early),
                                     incoming(channel, "done", "Allô ?", at=early),
                                     incoming(channel, "fresh", "Allô ?")])
    app.decide_interaction(_id(app, tenant, channel, "done"), "user-1", "APPROVE", None, None, None)
    assert app.record_breach(_id(app, tenant, channel, "old")).value is True
    assert app.record_breach(_id(app, tenant, channel, "old")).value is False  # once
    assert app.record_breach(_id(app, tenant, channel, "done")).value is False
    assert app.record_breach(_id(app, tenant, channel, "fresh")).value is False


def test_erasing_an_author_destroys_their_key(world: tuple[Parvis, str, str, FakeKeys]) -> None:
    app, tenant, channel, keys = world
    app.ingest_interactions(tenant, [incoming(channel, "a", "Mon adresse est 3 rue X", author="@Jeanne")])
    iid = _id(app, tenant, channel, "a")
    interaction = app.interaction(iid)
    assert app.personal.open(tenant, [(interaction.author_ref, interaction.text)]) == ["Mon adresse est 3 rue X"]
    assert app.erase_author(tenant, "@jeanne", [iid]).value == 1
    assert app.interaction(iid).erased is True
    assert app.personal.open(tenant, [(interaction.author_ref, interaction.text)]) == [None]
    assert (tenant, interaction.author_ref) not in keys.keys


def _id(app: Parvis, tenant: str, channel: str, external: str) -> str:
    from domain.interaction import Interaction

    return Interaction.create_id(tenant, channel, external)
