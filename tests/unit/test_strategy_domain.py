"""Strategy revisions, objectives with one KPI each, personas, campaigns (domain/strategy.py, domain/campaign.py)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.app import Parvis
from domain.campaign import Campaign
from domain.context import Actor, acting_as
from domain.errors import InvalidInput
from domain.post import Variant
from domain.strategy import EditorialLine, Objective, Persona, Strategy

GROW = Objective("Grow the audience", "AWARENESS", "followers", 12_000, baseline=8_000,
                 deadline=datetime(2026, 6, 30, tzinfo=UTC))
DONATE = Objective("Raise donations", "ACTION", "donations_amount", 50_000)
VOLUNTEERS = Persona("Young volunteers", "Students who give one evening a week")
LINE = EditorialLine(tone="warm", themes=("solidarity", "climate"), hot_share=0.3)


class FakeSecrets:
    def seal(self, plaintext: str) -> str:
        return "sealed:" + plaintext[::-1]

    def hash_password(self, password: str) -> str:
        return "hashed"


@dataclass
class World:
    app: Parvis
    tenant: str
    channel: str

    def revise(self, reason: str | None = "kick-off", **changes: Any) -> int:
        args: dict[str, Any] = {"positioning": "Local help, fast", "objectives": [GROW, DONATE],
                                "personas": [VOLUNTEERS], "editorial_line": LINE, **changes}
        return self.app.revise_strategy(self.tenant, reason, **args).value

    def strategy(self) -> Strategy:
        strategy = self.app.strategy(self.tenant)
        assert strategy is not None
        return strategy

    def revisions(self) -> list[Any]:
        return [e for e in self.app.events.get(Strategy.create_id(self.tenant)) if isinstance(e, Strategy.Revised)]

    def draft(self, **refs: str | None) -> str:
        args: dict[str, str | None] = {"campaign_id": None, "objective_id": None, "persona_id": None, **refs}
        return self.app.draft_post(self.tenant, "cm-ana", [Variant(self.channel, "Bonjour")], temperature="COLD",
                                   **args).value


@pytest.fixture
def world() -> Iterator[World]:
    app = Parvis(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, secrets=FakeSecrets())
    with acting_as(Actor(id="cm-ana", role="COMMUNITY_MANAGER")):
        agency_key = app.register_agency("Agence", "admin@agence.test", "correct horse battery").value[0]
        tenant = app.create_tenant(agency_key, "Banque alimentaire", "NGO", "Europe/Paris").value
        channel = app.connect_channel(tenant, "MASTODON", "@banque", "Nourrir", None).value
        yield World(app, tenant, channel)


# ---------------------------------------------------------------------- revisions


def test_each_revision_is_a_new_version_numbered_from_one_with_its_reason_and_author(world: World) -> None:
    # Given a tenant without a strategy
    assert world.app.strategy(world.tenant) is None
    # When the strategy is revised three times, by two people
    first = world.revise("kick-off")
    second = world.revise("Q2 review", objectives=[replace(GROW, target=15_000)])
    with acting_as(Actor(id="cm-bob", role="COMMUNITY_MANAGER")):
        third = world.revise("after the crisis", positioning="Help, then explain")
    # Then the revisions are numbered 1, 2, 3, each keeping its reason and its author
    assert (first, second, third) == (1, 2, 3)
    assert world.strategy().current == 3
    revisions = world.revisions()
    assert [r.number for r in revisions] == [1, 2, 3]
    assert [r.reason for r in revisions] == ["kick-off", "Q2 review", "after the crisis"]
    assert [r.meta["actor"] for r in revisions] == ["cm-ana", "cm-ana", "cm-bob"]
    assert revisions[1].objectives[0]["target"] == 15_000


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_revision_without_a_reason_is_refused_and_nothing_is_recorded(world: World, reason: str | None) -> None:
    # Given a tenant without a strategy
    # When a revision is made without a reason
    with pytest.raises(InvalidInput) as refused:
        world.revise(reason)
    # Then it is refused naming the reason, and the tenant still has no strategy
    assert refused.value.field == ("reason",)
    assert world.app.strategy(world.tenant) is None


def test_objective_and_persona_ids_are_stable_across_revisions(world: World) -> None:
    # Given a first revision with two objectives and a persona
    world.revise()
    before = world.revisions()[0]
    # When a second revision changes targets, wording case, the persona's description, and renames one objective
    world.revise(
        "targets raised",
        objectives=[replace(GROW, title="GROW THE AUDIENCE", target=20_000),
                    replace(DONATE, title="Raise more donations")],
        personas=[replace(VOLUNTEERS, description="Students and young workers")],
    )
    after = world.revisions()[1]
    # Then the same objective and persona keep their ids; the renamed objective is a new one
    assert after.objectives[0]["id"] == before.objectives[0]["id"]
    assert after.personas[0]["id"] == before.personas[0]["id"]
    assert after.objectives[1]["id"] != before.objectives[1]["id"]
    assert len({o["id"] for o in after.objectives}) == 2
    assert world.strategy().objective_ids == (after.objectives[0]["id"], after.objectives[1]["id"])
    assert world.strategy().persona_ids == (before.personas[0]["id"],)


def test_each_objective_is_recorded_with_exactly_one_kpi(world: World) -> None:
    # Given objectives each with a metric and a target
    # When the strategy is revised
    world.revise()
    # Then each objective carries one metric and one numeric target, as its single KPI
    for objective, given in zip(world.revisions()[0].objectives, [GROW, DONATE], strict=True):
        assert objective["metric"] == given.metric
        assert objective["target"] == float(given.target)
        assert isinstance(objective["metric"], str)
        assert isinstance(objective["target"], float)
    assert world.revisions()[0].objectives[0]["deadline"] == "2026-06-30T00:00:00+00:00"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"objectives": [replace(GROW, metric="Followers count")]}, "objectives.0.metric"),
        ({"objectives": [replace(GROW, metric="")]}, "objectives.0.metric"),
        ({"objectives": [GROW, replace(DONATE, metric=None)]}, "objectives.1.metric"),
        ({"objectives": [replace(GROW, target=None)]}, "objectives.0.target"),
        ({"objectives": [GROW, replace(DONATE, target=math.nan)]}, "objectives.1.target"),
        ({"objectives": [replace(GROW, target=8_000)]}, "objectives.0.target"),
        ({"objectives": [replace(GROW, baseline=math.inf)]}, "objectives.0.baseline"),
        ({"objectives": [replace(GROW, title=" ")]}, "objectives.0.title"),
        ({"objectives": [replace(GROW, intent="SALES")]}, "objectives.0.intent"),
        ({"objectives": [GROW, replace(GROW, target=1)]}, "objectives"),
        ({"objectives": [replace(GROW, channel_id="nope")]}, "objectives.0.channelId"),
        ({"personas": [Persona("")]}, "personas.0.name"),
        ({"personas": [VOLUNTEERS, replace(VOLUNTEERS, description="twin")]}, "personas"),
        ({"personas": [replace(VOLUNTEERS, channel_ids=("nope",))]}, "personas.0.channelIds.0"),
        ({"editorial_line": replace(LINE, hot_share=1.5)}, "editorialLine.hotShare"),
        ({"editorial_line": replace(LINE, hot_share=-0.1)}, "editorialLine.hotShare"),
        ({"editorial_line": replace(LINE, themes=("",))}, "editorialLine.themes"),
        ({"editorial_line": replace(LINE, posts_per_week=(("nope", 3.0),))}, "editorialLine.postsPerWeek.0.channelId"),
        ({"positioning": "x" * 4001}, "positioning"),
    ],
)
def test_bad_strategy_input_is_refused_naming_the_field(world: World, changes: dict[str, Any], field: str) -> None:
    # Given a valid first revision
    world.revise()
    # When a revision breaks one rule
    with pytest.raises(InvalidInput) as refused:
        world.revise("bad", **changes)
    # Then it is refused naming the field, and the strategy stays at its first version
    assert refused.value.field == tuple(field.split("."))
    assert world.strategy().current == 1


def test_posts_per_week_are_checked_per_channel(world: World) -> None:
    # Given a channel of the tenant
    # When the editorial line asks for a negative number of posts on it
    line = replace(LINE, posts_per_week=((world.channel, 3.0), (world.channel, -1.0)))
    with pytest.raises(InvalidInput) as refused:
        world.revise(editorial_line=line)
    # Then the refusal names that entry
    assert refused.value.field == ("editorialLine", "postsPerWeek", "1", "postsPerWeek")


# ---------------------------------------------------------------------- what posts may refer to


def test_a_strategy_just_started_has_no_objectives_nor_personas(world: World) -> None:
    # Given a strategy that has not been revised yet
    strategy = Strategy(tenant_key=world.tenant)
    # When its objectives and personas are read
    # Then both are empty
    assert strategy.current == 0
    assert strategy.objective_ids == ()
    assert strategy.persona_ids == ()


def test_a_post_names_only_an_objective_or_persona_of_the_strategy_in_force(world: World) -> None:
    # Given a tenant without a strategy, a post may not name a persona
    with pytest.raises(InvalidInput) as refused:
        world.draft(persona_id="someone")
    assert refused.value.field == ("personaId",)
    # When the strategy is revised
    world.revise()
    objective_id, persona_id = world.strategy().objective_ids[0], world.strategy().persona_ids[0]
    # Then a post may name its objective and persona, and no other
    post = world.app.post(world.draft(objective_id=objective_id, persona_id=persona_id))
    assert (post.objective_id, post.persona_id) == (objective_id, persona_id)
    with pytest.raises(InvalidInput) as refused:
        world.draft(objective_id="f" * 32)
    assert refused.value.field == ("objectiveId",)


def test_a_post_names_a_campaign_of_its_tenant_and_nothing_else(world: World) -> None:
    # Given a campaign of the tenant
    campaign_id = world.app.create_campaign(world.tenant, "Hiver", None, None, None, [], None).value
    # When posts name the campaign, then another object of the tenant as their campaign
    post = world.app.post(world.draft(campaign_id=campaign_id))
    with pytest.raises(InvalidInput) as refused:
        world.draft(campaign_id=world.channel)
    # Then only the campaign is accepted
    assert post.campaign_id == campaign_id
    assert refused.value.field == ("campaignId",)


# ---------------------------------------------------------------------- campaigns


def create_campaign(world: World, **changes: Any) -> Campaign:
    args: dict[str, Any] = {"name": "Hiver solidaire", "hashtag": "HiverSolidaire",
                            "starts_at": datetime(2025, 12, 1, tzinfo=UTC),
                            "ends_at": datetime(2026, 2, 28, tzinfo=UTC),
                            "objective_ids": [], "budget": None, **changes}
    campaign_id = world.app.create_campaign(world.tenant, **args).value
    return world.app.load(campaign_id, Campaign)


@pytest.mark.parametrize(
    ("given", "stored"),
    [("HiverSolidaire", "#HiverSolidaire"), ("#HiverSolidaire", "#HiverSolidaire"), ("  #été2025 ", "#été2025"),
     (None, None)],
)
def test_a_campaign_hashtag_is_normalised_to_one_hash_and_one_word(
    world: World, given: str | None, stored: str | None
) -> None:
    # Given a hashtag with or without its '#'
    # When a campaign is created with it
    campaign = create_campaign(world, hashtag=given)
    # Then it is stored as '#word'
    assert campaign.hashtag == stored


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hashtag": "two words"}, "hashtag"),
        ({"hashtag": "#"}, "hashtag"),
        ({"hashtag": "##double"}, "hashtag"),
        ({"hashtag": ""}, "hashtag"),
        ({"name": "  "}, "name"),
        ({"ends_at": datetime(2025, 11, 30, tzinfo=UTC)}, "endsAt"),
        ({"budget": -1.0}, "budget"),
        ({"budget": math.nan}, "budget"),
        ({"objective_ids": ["f" * 32]}, "objectiveIds.0"),
    ],
)
def test_bad_campaign_input_is_refused_naming_the_field(world: World, changes: dict[str, Any], field: str) -> None:
    # Given a tenant with a strategy
    world.revise()
    # When a campaign breaks one rule
    with pytest.raises(InvalidInput) as refused:
        create_campaign(world, **changes)
    # Then it is refused naming the field
    assert refused.value.field == tuple(field.split("."))


def test_a_campaign_serves_objectives_of_the_strategy_in_force_and_may_have_a_budget(world: World) -> None:
    # Given a strategy with two objectives
    world.revise()
    grow, donate = world.strategy().objective_ids
    # When a one-day campaign serves both, with a zero then a positive budget, and a third names an unknown one
    free = create_campaign(world, objective_ids=[grow, donate], budget=0.0,
                           ends_at=datetime(2025, 12, 1, tzinfo=UTC))
    paid = create_campaign(world, objective_ids=[donate], budget=1500.0)
    with pytest.raises(InvalidInput) as refused:
        create_campaign(world, objective_ids=[donate, "f" * 32])
    # Then the first two are recorded with their objectives and budget, and the third is refused naming the entry
    assert (free.objective_ids, free.budget) == ([grow, donate], 0.0)
    assert (paid.objective_ids, paid.budget) == ([donate], 1500.0)
    assert refused.value.field == ("objectiveIds", "1")
