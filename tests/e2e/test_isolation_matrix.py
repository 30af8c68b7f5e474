"""Isolation matrix: every operation of the schema, as every role, on its own tenant, on another tenant of its
agency and on a tenant of another agency.

The operations are generated from the schema: every field of Query, Mutation and Subscription, with one operation
per field of Tenant behind `tenant(id)` and one per type behind `node(id)`. A field without a rule in the tables
below fails the first test, so nothing new escapes the matrix. The expected outcome comes from the role matrix of the
contract header (domain/roles.py MATRIX): on a tenant the caller may see, a role the matrix allows gets its answer
(no FORBIDDEN, no NOT_FOUND) and any other role FORBIDDEN; a tenant the caller may not see is NOT_FOUND or null,
never FORBIDDEN, never data. Each tenant carries a unique marker in everything it holds (names, handles, post bodies,
interaction texts and authors, campaign, strategy and rule names, people's e-mails, crisis reasons...): no response
to a caller may contain the marker of a tenant it may not see. The reads run a second time against an API whose
resolver-level tenant filters are switched off, so row-level security alone is proven.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import graphql
import httpx
import pytest
import websockets

from domain.roles import MATRIX, Permission, Role
from tests.support import PASSWORD, Client, free_port, wait_http

OWN, SIBLING, ELSEWHERE = "own", "sibling", "elsewhere"
TARGETS = (OWN, SIBLING, ELSEWHERE)
ROLES = tuple(Role)
WORKERS = 6  # concurrent requests: they spend most of their time waiting (database, read-your-writes)
P = Permission


# ---------------------------------------------------------------- the rules: what the contract header says
@dataclass(frozen=True)
class Rule:
    """Who may run an operation: any of `permissions` on the target (empty: any signed-in caller).

    scope: `tenant` (the target is a tenant: unseen → NOT_FOUND/null), `agency` (the target is an agency: another
    agency's is null), `caller` (no target: about the caller), `agency command` (no target: the caller's agency)."""

    permissions: tuple[Permission, ...]
    scope: str = "tenant"


SIGNED_IN = Rule((), "caller")
ROOT_RULES: dict[str, Rule] = {
    "Query.me": SIGNED_IN,
    "Query.agency": SIGNED_IN,
    "Query.tenants": Rule((P.SEE,)),
    # Query.tenant and Query.node are expanded below, one operation per Tenant field and per Node type.
    "Mutation.login": SIGNED_IN,
    # About the caller alone (no tenant, no other person); run with a session of its own (SESSION_ENDING).
    "Mutation.signOut": SIGNED_IN,
    "Mutation.changePassword": SIGNED_IN,
    # The agency's API keys: the "manage tenants, staff" row.
    "Query.apiKeys": Rule((P.MANAGE_TENANTS,), "agency command"),
    "Mutation.issueApiKey": Rule((P.MANAGE_TENANTS,), "agency command"),
    "Mutation.revokeApiKey": Rule((P.MANAGE_TENANTS,), "agency command"),
    "Mutation.createTenant": Rule((P.MANAGE_TENANTS,), "agency command"),
    "Mutation.updateTenant": Rule((P.MANAGE_TENANTS,)),
    "Mutation.setApprovalPolicy": Rule((P.REVISE_STRATEGY,)),
    "Mutation.grantMembership": Rule((P.MANAGE_CLIENT_USERS,)),
    "Mutation.revokeMembership": Rule((P.MANAGE_CLIENT_USERS,)),
    # The contract names no row for channels: connecting one is part of setting a tenant's strategy up.
    "Mutation.connectChannel": Rule((P.REVISE_STRATEGY,)),
    "Mutation.reviseStrategy": Rule((P.REVISE_STRATEGY,)),
    "Mutation.createCampaign": Rule((P.DRAFT,)),
    "Mutation.draftPost": Rule((P.DRAFT,)),
    "Mutation.editPost": Rule((P.DRAFT,)),
    "Mutation.submitPost": Rule((P.DRAFT,)),
    "Mutation.approvePost": Rule((P.INTERNAL_APPROVAL, P.CLIENT_APPROVAL)),
    "Mutation.requestChanges": Rule((P.INTERNAL_APPROVAL, P.CLIENT_APPROVAL)),
    "Mutation.rejectPost": Rule((P.INTERNAL_APPROVAL, P.CLIENT_APPROVAL)),
    "Mutation.schedulePost": Rule((P.DRAFT,)),
    "Mutation.cancelPost": Rule((P.DRAFT,)),
    "Mutation.activateCrisis": Rule((P.CRISIS,)),
    "Mutation.deactivateCrisis": Rule((P.CRISIS,)),
    "Mutation.setModerationPolicy": Rule((P.REVISE_STRATEGY,)),
    "Mutation.ingestInteractions": Rule((P.MODERATE,)),
    "Mutation.assignInteraction": Rule((P.MODERATE,)),
    "Mutation.decideInteraction": Rule((P.MODERATE,)),
    "Mutation.overturnDecision": Rule((P.MODERATE,)),
    "Mutation.correctSentiment": Rule((P.MODERATE,)),
    "Mutation.eraseAuthor": Rule((P.MODERATE,)),
    "Mutation.recordMetrics": Rule((P.MODERATE,)),
    # README: reports are requested by agency staff (the "moderate, ingest, metrics" row).
    "Mutation.requestReport": Rule((P.MODERATE,)),
    "Subscription.history": Rule((P.AUDIT,)),
    "Subscription.postUpdates": Rule((P.SEE,)),
    "Subscription.moderationQueue": Rule((P.SEE,)),
}
_AUDITED = {"history", "asOf", "verifyHistory"}  # "history, asOf, verify"; every other field is "see tenant data"
TENANT_FIELDS: dict[str, Permission] = {
    name: P.AUDIT if name in _AUDITED else P.SEE
    for name in [
        "id", "name", "kind", "timezone", "locale", "status", "approvalPolicy", "crisis", "crisisSuggestion",
        "strategy", "strategyAt", "strategyVersions", "campaigns", "posts", "calendar", "moderationPolicy",
        "moderationQueue", "moderationStats", "kpis", "metricSeries", "reports", "channels", "members", "history",
        "asOf", "verifyHistory",
    ]
}
# Every type behind `node(id)`: the scope it belongs to, and the id of one of them in a target.
NODE_IDS: dict[str, tuple[str, Callable[[Place], str]]] = {
    "Tenant": ("tenant", lambda p: p.tenant_id),
    "Agency": ("agency", lambda p: p.agency_id),
    "User": ("tenant", lambda p: p.people[Role.CLIENT_VIEWER]),
    "Channel": ("tenant", lambda p: p.channel),
    "Post": ("tenant", lambda p: p.posts["shown"]),
    "Campaign": ("tenant", lambda p: p.campaign),
    "Interaction": ("tenant", lambda p: p.interactions["shown"]),
    "Report": ("tenant", lambda p: p.report),
}


# ---------------------------------------------------------------- the world: three tenants with markers, six roles
@dataclass
class Place:
    """A tenant and the objects planted in it; every text planted starts with its tag."""

    tag: str
    tenant_id: str = ""
    agency_id: str = ""
    staff_id: str = ""  # the agency's admin, who moderates every tenant of it
    moderator: str = ""  # a community manager of this tenant only
    channel: str = ""
    campaign: str = ""
    objective: str = ""
    persona: str = ""
    report: str = ""
    api_key: str = ""  # an API key of the place's agency, acting as its first person
    posts: dict[str, str] = field(default_factory=dict)
    interactions: dict[str, str] = field(default_factory=dict)
    people: dict[Role, str] = field(default_factory=dict)  # a client viewer per role, for `node` and revocations
    texts: set[str] = field(default_factory=set)  # every marker planted where a read shows it

    def text(self, kind: str) -> str:
        value = f"{self.tag}-{kind}"
        self.texts.add(value)
        return value

    @property
    def identifiers(self) -> list[str]:
        """The ids of what belongs to this tenant only (not its agency's, nor its agency admin's)."""
        return [_raw(self.tenant_id), self.tenant_id, self.channel, self.campaign, self.objective, self.persona,
                self.report, self.moderator, *self.posts.values(), *self.interactions.values(),
                *self.people.values()]

    @property
    def markers(self) -> re.Pattern[str]:
        return re.compile(re.escape(self.tag) + r"[\w.@-]*")


@dataclass
class Person:
    role: Role
    email: str
    client: Client


@dataclass
class World:
    places: dict[str, Place]
    people: dict[Role, Person]
    admins: dict[str, Client]  # the admin of each target's agency

    def foreign(self, role: Role) -> list[str]:
        """The targets whose data the role may never see."""
        return [ELSEWHERE] if role is Role.AGENCY_ADMIN else [SIBLING, ELSEWHERE]


def _raw(global_id: str) -> str:
    import base64

    return base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode().split(":", 1)[1]


def now(days: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


POST_MUTATIONS = ("editPost", "submitPost", "approvePost", "requestChanges", "rejectPost", "schedulePost",
                  "cancelPost")
INTERACTION_MUTATIONS = ("assignInteraction", "decideInteraction", "overturnDecision", "correctSentiment")


def _ok(client: Client, mutation: str, input_type: str, value: dict[str, Any], selection: str) -> dict[str, Any]:
    data = client.data(f"mutation($i: {input_type}!) {{ {mutation}(input: $i) {{ {selection} userErrors {{ code "
                       f"field message }} }} }}", {"i": value})[mutation]
    assert data["userErrors"] == [], (mutation, data)
    return data  # type: ignore[no-any-return]


def issue_key(admin: Client, place: Place) -> str:
    """A new API key of the place's agency, acting as the place's first person."""
    return _ok(admin, "issueApiKey", "IssueApiKeyInput", {"userId": place.people[ROLES[0]], "name": f"{place.tag}-key"},
               "apiKey { id }")["apiKey"]["id"]  # type: ignore[no-any-return]


def parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Run independent calls at once (each mutation waits for the read models: the waits overlap)."""
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda call: call(), calls))


def plant(admin: Client, place: Place) -> Place:
    """A tenant with a channel, a strategy, a moderation policy, a campaign, posts, interactions, metrics, a report,
    people and a crisis, every text of it carrying the place's tag."""
    me = admin.data("{ me { id } agency { id } }")
    place.staff_id, place.agency_id = me["me"]["id"], me["agency"]["id"]
    place.tenant_id = tid = _ok(admin, "createTenant", "CreateTenantInput", {
        "name": place.text("tenant"), "kind": "NGO", "timezone": "Europe/Paris"}, "tenant { id }")["tenant"]["id"]
    place.channel = _ok(admin, "connectChannel", "ConnectChannelInput", {
        "tenantId": tid, "platform": "SANDBOX", "handle": "@" + place.text("handle"),
        "mission": place.text("mission")}, "channel { id }")["channel"]["id"]
    grants = {role: {"email": place.text(f"person-{role.name.lower()}") + "@matrix.test", "role": "CLIENT_VIEWER",
                     "tenantId": tid, "password": PASSWORD} for role in ROLES}
    strategy, _, _, report, moderator, *people = parallel(
        lambda: _ok(admin, "reviseStrategy", "ReviseStrategyInput", {
            "tenantId": tid, "reason": place.text("strategy-reason"), "positioning": place.text("positioning"),
            "objectives": [{"title": place.text("objective"), "intent": "AWARENESS", "metric": "followers",
                            "baseline": 10, "target": 100, "channelId": place.channel}],
            "personas": [{"name": place.text("persona"), "description": place.text("persona-description"),
                          "channelIds": [place.channel]}],
            "editorialLine": {"tone": place.text("tone"), "themes": [place.text("theme")],
                              "postsPerWeek": [{"channelId": place.channel, "postsPerWeek": 3}]},
        }, "strategy { objectives { id } personas { id } }")["strategy"],
        lambda: _ok(admin, "setModerationPolicy", "SetModerationPolicyInput", {
            "tenantId": tid, "responseTargetMinutes": 60, "crisisResponseTargetMinutes": 15,
            "reason": place.text("policy-reason"),
            "rules": [{"name": place.text("rule"), "anyKeywords": [place.text("keyword")], "action": "HIDE"}],
        }, "tenant { id }"),
        lambda: _ok(admin, "recordMetrics", "RecordMetricsInput", {"tenantId": tid, "observations": [
            {"channelId": place.channel, "metric": "followers", "value": 42, "at": now(-1)}]}, "accepted"),
        lambda: _ok(admin, "requestReport", "RequestReportInput", {
            "tenantId": tid, "periodStart": now(-30), "periodEnd": now(-2)}, "report { id }")["report"]["id"],
        lambda: _ok(admin, "grantMembership", "GrantMembershipInput", {
            "email": place.text("moderator") + "@matrix.test", "role": "COMMUNITY_MANAGER", "tenantId": tid,
            "password": PASSWORD}, "membership { user { id } }")["membership"]["user"]["id"],
        *(lambda g=g: _ok(admin, "grantMembership", "GrantMembershipInput", g, "membership { user { id } }")[
            "membership"]["user"]["id"] for g in grants.values()),
    )
    place.report, place.moderator, place.people = report, moderator, dict(zip(grants, people, strict=True))
    place.api_key = issue_key(admin, place)
    place.objective, place.persona = strategy["objectives"][0]["id"], strategy["personas"][0]["id"]
    place.campaign = _ok(admin, "createCampaign", "CreateCampaignInput", {
        "tenantId": tid, "name": place.text("campaign"), "hashtag": f"#{place.tag}hashtag",
        "objectiveIds": [place.objective]}, "campaign { id }")["campaign"]["id"]
    drafts = {name: {"tenantId": tid, "campaignId": place.campaign, "objectiveId": place.objective,
                     "personaId": place.persona,
                     "variants": [{"channelId": place.channel, "body": place.text(f"post-{name}")}]}
              for name in ("shown", *POST_MUTATIONS)}
    place.posts = dict(zip(drafts, parallel(*(
        lambda d=d: _ok(admin, "draftPost", "DraftPostInput", d, "post { id }")["post"]["id"]
        for d in drafts.values())), strict=True))
    items = [{"channelId": place.channel, "kind": "COMMENT", "externalId": f"{place.tag}-{name}",
              "author": "@" + place.text(f"author-{name}"), "text": place.text(f"says-{name}"),
              "receivedAt": now(-0.01), "inReplyToPostId": place.posts["shown"]}
             for name in ("shown", *INTERACTION_MUTATIONS)]
    # Its author is erased by `eraseAuthor`: not one of the texts every read must show.
    items.append({"channelId": place.channel, "kind": "MENTION", "externalId": f"{place.tag}-erasable",
                  "author": f"@{place.tag}-erasable", "text": f"{place.tag}-erasable-text", "receivedAt": now(-0.01)})
    assert _ok(admin, "ingestInteractions", "IngestInteractionsInput", {"tenantId": tid, "items": items},
               "accepted")["accepted"] == len(items)
    queue = admin.data("query($id: ID!) { tenant(id: $id) { moderationQueue(first: 100) { edges { node { id "
                       "externalId } } } } }", {"id": tid})["tenant"]["moderationQueue"]["edges"]
    place.interactions = {e["node"]["externalId"].removeprefix(f"{place.tag}-"): e["node"]["id"] for e in queue}
    parallel(
        lambda: _ok(admin, "decideInteraction", "DecideInteractionInput", {
            "interactionId": place.interactions["overturnDecision"], "decision": "HIDE",
            "rationale": place.text("rationale")}, "interaction { id }"),
        lambda: _ok(admin, "activateCrisis", "ActivateCrisisInput", {"tenantId": tid,
                                                                     "reason": place.text("crisis")},
                    "tenant { id }"),
    )
    return place


def build_world(server: str, domain: Any) -> World:
    """Agency one: tenants `own` and `sibling`, and a person of each role (client roles, community manager and
    auditor on `own` only; the agency admin agency-wide). Agency two: tenant `elsewhere`."""
    run = uuid.uuid4().hex[:10]
    admins: dict[str, Client] = {}
    for target, letter in ((OWN, "a"), (ELSEWHERE, "c")):
        email = f"mk{run}{letter}-admin@matrix.test"
        domain.register_agency(f"mk{run}{letter}-agency", email, PASSWORD)
        admins[target] = Client(server).login(email)
    admins[SIBLING] = admins[OWN]
    places = {target: Place(f"mk{run}{letter}") for target, letter in zip(TARGETS, "abc", strict=True)}
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda t: plant(admins[t], places[t]), TARGETS))
    people = {Role.AGENCY_ADMIN: Person(Role.AGENCY_ADMIN, f"mk{run}a-admin@matrix.test", admins[OWN])}
    own = places[OWN]
    # A person of both tenants of agency one: what `own` shows of them must not reveal their role on `sibling`.
    _ok(admins[OWN], "grantMembership", "GrantMembershipInput", {
        "email": f"{own.tag}-person-client_viewer@matrix.test", "role": "CLIENT_VIEWER",
        "tenantId": places[SIBLING].tenant_id}, "membership { role }")

    def person(role: Role) -> Person:
        email = f"{role.name.lower()}-{run}@matrix.test"
        _ok(admins[OWN], "grantMembership", "GrantMembershipInput", {
            "email": email, "role": role.value, "tenantId": own.tenant_id, "password": PASSWORD},
            "membership { role }")
        return Person(role, email, admins[OWN].login(email))

    people |= {p.role: p for p in parallel(*(lambda r=r: person(r) for r in ROLES[1:]))}
    return World(places, people, admins)


# ---------------------------------------------------------------- argument factories
@dataclass
class Call:
    """What an argument factory knows: the world, the target, the caller and the operation."""

    world: World
    place: Place
    person: Person
    operation: str
    target: str


def _post(c: Call) -> str:
    return c.place.posts[c.operation.rsplit(".", 1)[1]]


def _interaction(c: Call) -> str:
    return c.place.interactions[c.operation.rsplit(".", 1)[1]]


def _variants(c: Call) -> list[dict[str, Any]]:
    return [{"channelId": c.place.channel, "body": f"{c.place.tag}-body-{uuid.uuid4().hex[:6]}"}]


# Values of scalar arguments, by "Type.field.argument" (optional ones not listed keep their defaults).
ARGUMENTS: dict[str, Callable[[Call], Any]] = {
    "Query.tenants.search": lambda c: c.place.tag,
    "Query.tenant.id": lambda c: c.place.tenant_id,
    "Query.node.id": lambda c: NODE_IDS[c.operation.rsplit(".", 1)[1]][1](c.place),
    "Tenant.strategyAt.at": lambda _: now(),
    "Tenant.calendar.from": lambda _: now(-30),
    "Tenant.calendar.to": lambda _: now(30),
    "Tenant.moderationStats.from": lambda _: now(-30),
    "Tenant.moderationStats.to": lambda _: now(1),
    "Tenant.metricSeries.metric": lambda _: "followers",
    "Tenant.metricSeries.from": lambda _: now(-7),
    "Tenant.metricSeries.to": lambda _: now(1),
    "Tenant.metricSeries.channelId": lambda c: c.place.channel,
    "Tenant.asOf.at": lambda _: now(),
    "Tenant.history.first": lambda _: 100,  # all of a planted tenant's events
    "Mutation.login.email": lambda c: c.person.email,
    "Mutation.login.password": lambda _: PASSWORD,
    "Subscription.history.tenantId": lambda c: c.place.tenant_id,
    "Subscription.postUpdates.tenantId": lambda c: c.place.tenant_id,
    "Subscription.moderationQueue.tenantId": lambda c: c.place.tenant_id,
}
# Values of input objects, by input type: minimal and valid for the target.
INPUTS: dict[str, Callable[[Call], dict[str, Any]]] = {
    "CreateTenantInput": lambda _: {"name": f"matrix-{uuid.uuid4().hex[:8]}", "kind": "BRAND", "timezone": "UTC"},
    "UpdateTenantInput": lambda c: {"tenantId": c.place.tenant_id, "name": f"{c.place.tag}-tenant",
                                    "reason": f"{c.place.tag}-renamed"},
    "SetApprovalPolicyInput": lambda c: {"tenantId": c.place.tenant_id, "internalApprovals": 1,
                                         "clientApproval": False},
    # A person of the tenant gets one more role (a new person would cost a password hash per call).
    "GrantMembershipInput": lambda c: {"email": f"{c.place.tag}-person-{c.person.role.name.lower()}@matrix.test",
                                       "role": "CLIENT_REVIEWER", "tenantId": c.place.tenant_id},
    "RevokeMembershipInput": lambda c: {"userId": c.place.people[c.person.role], "role": "CLIENT_VIEWER",
                                        "tenantId": c.place.tenant_id},
    "ConnectChannelInput": lambda c: {"tenantId": c.place.tenant_id, "platform": "SANDBOX",
                                      "handle": f"@{c.place.tag}-more-{uuid.uuid4().hex[:6]}"},
    "ReviseStrategyInput": lambda c: {"tenantId": c.place.tenant_id, "objectives": [], "personas": [],
                                      "editorialLine": {}, "reason": f"{c.place.tag}-revised"},
    "CreateCampaignInput": lambda c: {"tenantId": c.place.tenant_id, "name": f"{c.place.tag}-new-campaign"},
    "DraftPostInput": lambda c: {"tenantId": c.place.tenant_id, "variants": _variants(c)},
    "EditPostInput": lambda c: {"postId": _post(c), "variants": _variants(c)},
    "PostActionInput": lambda c: {"postId": _post(c)},
    "ReviewPostInput": lambda c: {"postId": _post(c), "comment": f"{c.place.tag}-comment"},
    "SchedulePostInput": lambda c: {"postId": _post(c), "at": now(2)},
    "ActivateCrisisInput": lambda c: {"tenantId": c.place.tenant_id, "reason": f"{c.place.tag}-crisis-again"},
    "TenantActionInput": lambda c: {"tenantId": c.place.tenant_id},
    "SetModerationPolicyInput": lambda c: {"tenantId": c.place.tenant_id, "rules": [], "responseTargetMinutes": 30,
                                           "crisisResponseTargetMinutes": 10},
    "IngestInteractionsInput": lambda c: {"tenantId": c.place.tenant_id, "items": [{
        "channelId": c.place.channel, "kind": "COMMENT", "externalId": uuid.uuid4().hex, "author": "@someone",
        "text": f"{c.place.tag}-ingested", "receivedAt": now(-0.01)}]},
    "AssignInteractionInput": lambda c: {"interactionId": _interaction(c), "assigneeId": c.place.staff_id},
    "DecideInteractionInput": lambda c: {"interactionId": _interaction(c), "decision": "DISMISS"},
    "OverturnDecisionInput": lambda c: {"interactionId": _interaction(c), "decision": "APPROVE",
                                        "rationale": f"{c.place.tag}-overturned"},
    "CorrectSentimentInput": lambda c: {"interactionId": _interaction(c), "sentiment": "POSITIVE"},
    "EraseAuthorInput": lambda c: {"tenantId": c.place.tenant_id, "author": f"@{c.place.tag}-erasable",
                                   "reason": "right to erasure"},
    "RecordMetricsInput": lambda c: {"tenantId": c.place.tenant_id, "observations": [
        {"channelId": c.place.channel, "metric": "followers", "value": 43, "at": now(-0.5)}]},
    "RequestReportInput": lambda c: {"tenantId": c.place.tenant_id, "periodStart": now(-10), "periodEnd": now(-3)},
    "ChangePasswordInput": lambda _: {"currentPassword": PASSWORD, "newPassword": PASSWORD},
    "IssueApiKeyInput": lambda c: {"userId": c.place.people[c.person.role], "name": f"{c.place.tag}-key"},
    # A key of its own for each call (the admin's call revokes it)
    "RevokeApiKeyInput": lambda c: {"apiKeyId": issue_key(c.world.admins[OWN], c.place)},
}
# Operations that end the caller's sessions: each call runs as a person of its own (a new client viewer of `own`),
# so that the matrix's people keep theirs.
SESSION_ENDING = {"Mutation.signOut", "Mutation.changePassword"}


def disposable_session(url: str, world: World) -> str:
    email = f"{world.places[OWN].tag}-session-{uuid.uuid4().hex[:8]}@matrix.test"
    _ok(world.admins[OWN], "grantMembership", "GrantMembershipInput", {
        "email": email, "role": "CLIENT_VIEWER", "tenantId": world.places[OWN].tenant_id, "password": PASSWORD},
        "membership { role }")
    return Client(url).login(email).token  # type: ignore[return-value]


# ---------------------------------------------------------------- operations, generated from the schema
@dataclass(frozen=True)
class Operation:
    name: str  # Query.tenant.posts, Query.node.Post, Mutation.draftPost, ...
    kind: str  # query, mutation, subscription
    rule: Rule
    document: str
    arguments: tuple[tuple[str, str], ...]  # (variable, "Type.field.argument" or input type)
    root: str  # the root field, whose value is null when the target is not visible

    def variables(self, call: Call) -> dict[str, Any]:
        return {var: (INPUTS[key] if key in INPUTS else ARGUMENTS[key])(call) for var, key in self.arguments}


def _schema() -> graphql.GraphQLSchema:
    from api.context import ApiConfig
    from api.schema import build_schema

    return build_schema(ApiConfig(development=True))._schema


SELECTION_DEPTH = 4
PAYLOAD_DEPTH = 2
MAX_COST = 10_000  # the default PARVIS_MAX_QUERY_COST (api/cost.py): deeper selections are cut to stay below


def _permission(f: graphql.GraphQLField) -> str:
    definition = f.extensions.get("strawberry-definition")
    return str((definition.metadata or {}).get("permission")) if definition else "inherited"


def selection(t: graphql.GraphQLOutputType, path: tuple[str, ...] = (), depth: int = 0,
              limit: int = SELECTION_DEPTH) -> str:
    """Every field of a type, down to `limit`; nested fields that take arguments or need more than seeing
    the tenant are left to their own operations, and a type already on the path gets its id only."""
    named = graphql.get_named_type(t)
    if graphql.is_leaf_type(named):
        return ""
    if graphql.is_abstract_type(named):
        return "{ __typename }"
    assert isinstance(named, graphql.GraphQLObjectType)
    parts = []
    for name, f in named.fields.items():
        inner = graphql.get_named_type(f.type)
        if depth > 0 and (f.args or _permission(f) not in ("inherited", "SEE")):
            continue
        if graphql.is_leaf_type(inner):
            parts.append(name)
        elif inner.name not in path and depth < limit:
            parts.append(f"{name} {selection(f.type, (*path, named.name), depth + 1, limit)}")
        elif isinstance(inner, graphql.GraphQLObjectType) and "id" in inner.fields:
            parts.append(f"{name} {{ id }}")
    return "{ " + " ".join(parts or ["__typename"]) + " }"


def _arguments(owner: str, f: graphql.GraphQLField, prefix: str, missing: list[str]) -> tuple[
        list[str], list[str], list[tuple[str, str]]]:
    """(variable definitions, argument list, (variable, factory key)) of a field's arguments."""
    definitions, passed, keys = [], [], []
    for arg_name, arg in f.args.items():
        named = graphql.get_named_type(arg.type)
        key = named.name if isinstance(named, graphql.GraphQLInputObjectType) else f"{owner}.{arg_name}"
        required = graphql.is_non_null_type(arg.type) and arg.default_value is graphql.Undefined
        if key not in INPUTS and key not in ARGUMENTS:
            if arg_name == "first":
                passed.append("first: 20")  # the default, written out
            elif required:
                missing.append(f"no factory for {key} (argument {owner}.{arg_name})")
            continue
        var = f"{prefix}{arg_name}"
        definitions.append(f"${var}: {arg.type}")
        passed.append(f"{arg_name}: ${var}")
        keys.append((var, key))
    return definitions, passed, keys


def operations() -> tuple[list[Operation], list[str]]:
    """Every operation of the schema, and what the tables above lack for some of them."""
    schema = _schema()
    ops: list[Operation] = []
    missing: list[str] = []
    roots = (("query", schema.query_type), ("mutation", schema.mutation_type),
             ("subscription", schema.subscription_type))
    for kind, root in roots:
        assert root is not None
        for name, f in root.fields.items():
            qualified = f"{root.name}.{name}"
            if qualified == "Query.tenant":
                ops += _tenant_operations(schema, f, missing)
                continue
            if qualified == "Query.node":
                ops += _node_operations(schema, f, missing)
                continue
            if qualified not in ROOT_RULES:
                missing.append(f"no rule for {qualified}")
                continue
            defs, passed, keys = _arguments(qualified, f, "", missing)
            head = f"{kind}({', '.join(defs)})" if defs else kind
            args = f"({', '.join(passed)})" if passed else ""
            # A mutation's payload is its object and what that holds: the reads cover the rest (and cost less).
            deepest = PAYLOAD_DEPTH if kind == "mutation" else SELECTION_DEPTH
            document = _affordable(schema, lambda limit, f=f, name=name, head=head, args=args: (
                f"{head} {{ {name}{args} {selection(f.type, (), 0, limit)} }}"), deepest)
            ops.append(Operation(qualified, kind, ROOT_RULES[qualified], document, tuple(keys), name))
    return ops, missing


def _affordable(schema: graphql.GraphQLSchema, document: Callable[[int], str], deepest: int = SELECTION_DEPTH) -> str:
    """The document with the deepest selection (down to `deepest`) whose cost the server accepts."""
    from api.cost import operation_cost

    for limit in range(deepest, 0, -1):
        text = document(limit)
        if operation_cost(schema, graphql.parse(text), None, {}) <= MAX_COST:
            return text
    return document(0)


def _tenant_operations(schema: graphql.GraphQLSchema, root: graphql.GraphQLField,
                       missing: list[str]) -> list[Operation]:
    tenant = schema.get_type("Tenant")
    assert isinstance(tenant, graphql.GraphQLObjectType)
    ops = []
    for name, f in tenant.fields.items():
        if name not in TENANT_FIELDS:
            missing.append(f"no rule for Tenant.{name}")
            continue
        defs, passed, keys = _arguments(f"Tenant.{name}", f, "f_", missing)
        args = f"({', '.join(passed)})" if passed else ""
        head = f"query($id: ID!{''.join(', ' + d for d in defs)})"
        document = _affordable(schema, lambda limit, f=f, name=name, head=head, args=args: (
            f"{head} {{ tenant(id: $id) {{ id {name}{args} {selection(f.type, ('Tenant',), 1, limit)} }} }}"))
        rule = Rule((TENANT_FIELDS[name],))
        ops.append(Operation(f"Query.tenant.{name}", "query", rule, document,
                             (("id", "Query.tenant.id"), *keys), "tenant"))
    return ops


def _node_operations(schema: graphql.GraphQLSchema, root: graphql.GraphQLField,
                     missing: list[str]) -> list[Operation]:
    node = schema.get_type("Node")
    assert isinstance(node, graphql.GraphQLInterfaceType)
    ops = []
    for t in schema.get_possible_types(node):
        if t.name not in NODE_IDS:
            missing.append(f"no id factory for Node type {t.name}")
            continue
        document = _affordable(schema, lambda limit, t=t: (
            f"query($id: ID!) {{ node(id: $id) {{ __typename ... on {t.name} {selection(t, (), 1, limit)} }} }}"))
        ops.append(Operation(f"Query.node.{t.name}", "query", Rule((P.SEE,), NODE_IDS[t.name][0]), document,
                             (("id", "Query.node.id"),), "node"))
    return ops


# ---------------------------------------------------------------- expectations and checks
@dataclass(frozen=True)
class Case:
    operation: Operation
    role: Role
    target: str | None  # None: an operation without a target runs once per role


def expected(op: Operation, role: Role, target: str | None) -> str:
    """ok, forbidden or hidden, from the contract's role matrix."""
    rule = op.rule
    allowed = not rule.permissions or any(role in MATRIX[p] for p in rule.permissions)
    if rule.scope == "caller":
        return "ok"
    if rule.scope == "agency command":  # only agency-wide roles act on the agency itself (the admin here)
        return "ok" if allowed and role is Role.AGENCY_ADMIN else "forbidden"
    visible = target == OWN or (target == SIBLING and (rule.scope == "agency" or role is Role.AGENCY_ADMIN))
    if not visible:
        return "hidden"
    return "ok" if allowed else "forbidden"


def cases(ops: list[Operation], kinds: set[str]) -> list[Case]:
    out = []
    for op in ops:
        if op.kind not in kinds:
            continue
        targets: tuple[str | None, ...] = (None,) if op.rule.scope in ("caller", "agency command") else TARGETS
        out += [Case(op, role, target) for role in ROLES for target in targets]
    return out


@dataclass
class Answer:
    case: Case
    status: int
    body: dict[str, Any]
    request: str
    text: str

    @property
    def codes(self) -> list[str | None]:
        return [e.get("extensions", {}).get("code") for e in self.body.get("errors") or []]


def leaks(world: World, role: Role, request: str, text: str) -> list[str]:
    """Markers and ids of tenants the role may not see, found in an answer (and not sent by the caller itself)."""
    found = []
    for target in world.foreign(role):
        place = world.places[target]
        found += [m for m in place.markers.findall(text) if m not in request]
        identifiers = [*place.identifiers, place.agency_id] if target == ELSEWHERE else place.identifiers
        found += [i for i in identifiers if i and i in text and i not in request]
    return found


def stray_memberships(value: Any) -> list[Any]:
    """Memberships shown without their tenant although a client role always has one: the tenant is hidden, so
    the membership should be too."""
    if isinstance(value, list):
        return [m for v in value for m in stray_memberships(v)]
    if not isinstance(value, dict):
        return []
    if str(value.get("role", "")).startswith("CLIENT_") and "tenant" in value and value["tenant"] is None:
        return [value]
    return [m for v in value.values() for m in stray_memberships(v)]


def problems(world: World, answer: Answer) -> list[str]:
    """What is wrong with an answer to a query or a mutation, given the role matrix."""
    case = answer.case
    op, outcome = case.operation, expected(case.operation, case.role, case.target)
    where = f"{op.name} as {case.role.name} on {case.target or '-'} (expected {outcome})"
    out = [f"{where}: leaked {m}" for m in leaks(world, case.role, answer.request, answer.text)]
    if case.role is not Role.AGENCY_ADMIN:
        out += [f"{where}: a membership of a tenant it cannot see {m}" for m in stray_memberships(answer.body)]
    if answer.status != 200:
        return [*out, f"{where}: HTTP {answer.status} {answer.text[:300]}"]
    wrong = {"ok": _not_answered, "forbidden": _not_forbidden, "hidden": _not_hidden}[outcome](answer)
    return [*out, f"{where}: {wrong}"] if wrong else out


def _not_answered(answer: Answer) -> str | None:
    """Why an allowed call did not get its answer (None when it did)."""
    op = answer.case.operation
    value = (answer.body.get("data") or {}).get(op.root)
    if answer.codes:
        return f"errors {answer.body['errors']}"
    if value is None:
        return "no data"
    if op.kind == "mutation" and any(e["code"] == "NOT_FOUND" for e in value.get("userErrors") or []):
        return f"user errors {value['userErrors']}"
    if op.name == "Query.tenants" and value["totalCount"] != 1:
        return f"{value['totalCount']} tenants found"
    return None


def _not_forbidden(answer: Answer) -> str | None:
    return None if set(answer.codes) == {"FORBIDDEN"} else f"codes {answer.codes} {answer.text[:300]}"


def _not_hidden(answer: Answer) -> str | None:
    """Why a call on a tenant the caller cannot see was not NOT_FOUND (mutations) or null (queries)."""
    op = answer.case.operation
    value = (answer.body.get("data") or {}).get(op.root)
    if op.kind == "mutation":
        return None if answer.codes == ["NOT_FOUND"] and value is None else f"codes {answer.codes} {answer.text[:300]}"
    if answer.codes:
        return f"errors {answer.body['errors']}"
    if op.name == "Query.tenants":
        return None if value["totalCount"] == 0 and value["edges"] == [] else f"found {value}"
    return None if value is None else f"data {value}"


_HTTP = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=WORKERS * 2))


def ask(url: str, world: World, case: Case) -> Answer:
    person = world.people[case.role]
    place = world.places[case.target or OWN]
    call = Call(world, place, person, case.operation.name, case.target or OWN)
    variables = case.operation.variables(call)
    payload = {"query": case.operation.document, "variables": variables}
    token = person.client.token
    if case.operation.name in SESSION_ENDING:
        token = disposable_session(url, world)
    headers = {} if case.operation.name == "Mutation.login" else {"authorization": f"Bearer {token}"}
    response = _HTTP.post(url, json=payload, headers=headers)
    try:
        body = response.json()
    except ValueError:
        body = {}
    return Answer(case, response.status_code, body, json.dumps(payload), response.text)


def ask_all(url: str, world: World, todo: list[Case], parallel: bool = True) -> list[Answer]:
    if not parallel:
        return [ask(url, world, c) for c in todo]
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda c: ask(url, world, c), todo))


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(server: str, domain: Any) -> World:
    return build_world(server, domain)


@pytest.fixture(scope="module")
def ops() -> list[Operation]:
    found, missing = operations()
    assert missing == []
    return found


@pytest.fixture(scope="module")
def rls_only(settings: Any) -> Iterator[str]:
    """The API with every resolver-level tenant filter switched off (as tests/e2e/test_rls_alone.py builds it),
    served by uvicorn in a thread so that HTTP and WebSocket clients reach it as they reach `parvis serve`."""
    import uvicorn

    from api.app import create_app
    from api.context import ApiConfig
    from parvis import wiring

    app = create_app(
        ApiConfig(development=True, resolver_filters=False),
        database_url=settings.database_url,
        domain_factory=lambda: wiring.domain(settings),
        secrets=wiring.secret_box(settings),
        token_key=wiring.token_key(settings),
        token_ttl=900,
        read_models=wiring.read_model_names(),
        pool_size=4,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="rls-only-api", daemon=True)
    thread.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# ---------------------------------------------------------------- the tests
def test_every_operation_of_the_schema_has_a_rule_and_its_arguments() -> None:
    found, missing = operations()
    assert missing == []
    names = {op.name for op in found}
    assert {"Query.tenant.history", "Query.node.Report", "Mutation.approvePost", "Subscription.history"} <= names


def test_every_generated_document_is_valid_and_within_the_limits(ops: list[Operation]) -> None:
    from api.cost import operation_cost

    schema = _schema()
    for op in ops:
        document = graphql.parse(op.document)
        assert graphql.validate(schema, document) == [], op.name
        assert operation_cost(schema, document, None, {}) <= MAX_COST, op.name
        assert _nesting(op.document) <= 12, op.name  # PARVIS_MAX_QUERY_DEPTH


def _nesting(document: str) -> int:
    level = deepest = 0
    for char in document:
        level += {"{": 1, "}": -1}.get(char, 0)
        deepest = max(deepest, level)
    return deepest


def test_the_oracle_flags_leaks_wrong_codes_and_data_of_tenants_the_caller_cannot_see() -> None:
    """The checks themselves, on made-up answers: a matrix whose oracle sees nothing would pass anything."""
    import base64

    def place(letter: str) -> Place:
        p = Place(f"mkoracle{letter}")
        p.tenant_id = base64.urlsafe_b64encode(f"Tenant:{letter * 32}".encode()).decode().rstrip("=")
        return p

    world = World({t: place(t[0]) for t in TARGETS}, {}, {})
    name = Operation("Query.tenant.name", "query", Rule((P.SEE,)), "", (), "tenant")
    history = Operation("Query.tenant.history", "query", Rule((P.AUDIT,)), "", (), "tenant")
    draft = Operation("Mutation.draftPost", "mutation", Rule((P.DRAFT,)), "", (), "draftPost")

    def answer(op: Operation, role: Role, target: str, body: dict[str, Any]) -> list[str]:
        return problems(world, Answer(Case(op, role, target), 200, body, "{}", json.dumps(body)))

    def error(code: str) -> dict[str, Any]:
        return {"errors": [{"message": "x", "extensions": {"code": code}}]}

    viewer = Role.CLIENT_VIEWER
    assert answer(name, viewer, SIBLING, {"data": {"tenant": None}}) == []
    assert answer(name, viewer, SIBLING, {"data": {"tenant": {"name": "mkoraclesx-tenant"}}})  # data, and a leak
    assert answer(name, viewer, OWN, {"data": {"tenant": {"name": "y", "x": "mkoraclee-post"}}})  # a leak
    assert answer(name, viewer, OWN, {"data": {"tenant": {"members": [{"role": "CLIENT_VIEWER", "tenant": None}]}}})
    assert answer(name, viewer, OWN, {"data": {"tenant": None}, **error("FORBIDDEN")})
    assert answer(history, viewer, OWN, {"data": {"tenant": None}, **error("FORBIDDEN")}) == []
    assert answer(history, viewer, OWN, {"data": {"tenant": None}, **error("NOT_FOUND")})
    assert answer(history, Role.AUDITOR, ELSEWHERE, {"data": {"tenant": None}, **error("FORBIDDEN")})
    assert answer(draft, Role.AGENCY_ADMIN, SIBLING, {"data": {"draftPost": {"userErrors": []}}}) == []
    assert answer(draft, Role.COMMUNITY_MANAGER, SIBLING, {"data": {"draftPost": {"userErrors": []}}})
    assert answer(draft, Role.COMMUNITY_MANAGER, SIBLING, {"data": None, **error("NOT_FOUND")}) == []
    assert answer(draft, Role.COMMUNITY_MANAGER, SIBLING, {"data": None, **error("FORBIDDEN")})


def test_the_rules_agree_with_the_permissions_the_api_declares(ops: list[Operation]) -> None:
    schema = _schema()
    disagree = []
    for op in ops:
        parts = op.name.split(".")
        if parts[:2] == ["Query", "node"]:
            continue
        owner, name = ("Tenant", parts[2]) if parts[:2] == ["Query", "tenant"] else (parts[0], parts[1])
        t = schema.get_type(owner)
        assert isinstance(t, graphql.GraphQLObjectType)
        declared = set(_permission(t.fields[name]).split("|"))
        ours = {p.name for p in op.rule.permissions} or {"AUTHENTICATED", "ANONYMOUS", "SEE"}
        if not declared <= ours and not (owner == "Tenant" and declared == {"inherited"}):
            disagree.append(f"{op.name}: the API declares {declared}, the contract {ours}")
    assert disagree == []


def test_every_query_follows_the_role_matrix_and_shows_nothing_of_another_tenant(
    world: World, ops: list[Operation], server: str
) -> None:
    todo = cases(ops, {"query"})
    answers = ask_all(server, world, todo)
    found = [p for a in answers for p in problems(world, a)]
    assert not found, "\n".join(found)
    # The markers are where the reads look: everything planted shows up for whoever may see it.
    for target in (OWN, SIBLING):
        shown = " ".join(a.text for a in answers if a.case.target == target and a.case.role is Role.AGENCY_ADMIN)
        assert {t for t in world.places[target].texts if t not in shown} == set()
    print(f"\nisolation matrix, queries: {len({c.operation.name for c in todo})} operations, {len(todo)} cases")


def test_row_level_security_alone_gives_every_query_the_same_answer(
    world: World, ops: list[Operation], rls_only: str
) -> None:
    todo = cases(ops, {"query"})
    answers = ask_all(rls_only, world, todo)
    found = [p for a in answers for p in problems(world, a)]
    assert not found, "\n".join(found)


async def _subscriptions(url: str, world: World, todo: list[Case], triggers: Callable[[], None]) -> list[str]:
    """Each role subscribes to every subscription on every target on one socket; events happen in every tenant;
    what came back is checked against the matrix."""
    ws_url = url.replace("http://", "ws://")
    by_role: dict[Role, list[Case]] = {}
    for c in todo:
        by_role.setdefault(c.role, []).append(c)

    async def run(role: Role, mine: list[Case], subscribed: asyncio.Event, answered: asyncio.Event) -> list[str]:
        token = world.people[role].client.token
        received: dict[str, list[dict[str, Any]]] = {str(i): [] for i in range(len(mine))}
        out: list[str] = []
        async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            requests = {}
            for i, c in enumerate(mine):
                call = Call(world, world.places[c.target or OWN], world.people[role], c.operation.name,
                            c.target or OWN)
                payload = {"query": c.operation.document, "variables": c.operation.variables(call)}
                requests[str(i)] = json.dumps(payload)
                await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": payload}))
            subscribed.set()
            # Until every subscription has its answer: a message for the allowed ones (after the events), an
            # error for the others.
            waiting = set(received)
            deadline = time.monotonic() + 40
            while waiting and time.monotonic() < deadline:
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.2))
                except TimeoutError:
                    continue
                if "id" in message:
                    received[message["id"]].append(message)
                    waiting.discard(message["id"])
            answered.set()
        for i, c in enumerate(mine):
            outcome = expected(c.operation, role, c.target)
            where = f"{c.operation.name} as {role.name} on {c.target} (expected {outcome})"
            messages = received[str(i)]
            text = json.dumps(messages)
            out += [f"{where}: leaked {m}" for m in leaks(world, role, requests[str(i)], text)]
            errors = [e for m in messages for e in (m.get("payload") if m["type"] == "error" else
                                                    m.get("payload", {}).get("errors")) or []]
            codes = [e.get("extensions", {}).get("code") for e in errors]
            nexts = [m for m in messages if m["type"] == "next" and m["payload"].get("data")]
            refusal = {"forbidden": {"FORBIDDEN"}, "hidden": {"NOT_FOUND"}}.get(outcome)
            wrong = (codes or not nexts) if refusal is None else (set(codes) != refusal or nexts)
            if wrong:
                out.append(f"{where}: {text[:300]}")
        return out

    events = {role: (asyncio.Event(), asyncio.Event()) for role in by_role}
    tasks = [asyncio.create_task(run(role, mine, *events[role])) for role, mine in by_role.items()]
    for subscribed, _ in events.values():
        await subscribed.wait()
    # A subscription follows its feed a moment after it is sent, and misses what happened before: the events
    # happen again until every allowed subscription has had one (or four times).
    for _attempt in range(4):
        await asyncio.sleep(1)
        await asyncio.to_thread(triggers)
        try:
            await asyncio.wait_for(asyncio.gather(*(answered.wait() for _, answered in events.values())), 6)
            break
        except TimeoutError:
            continue
    return [p for problems_ in await asyncio.gather(*tasks) for p in problems_]


def _events_everywhere(world: World) -> Callable[[], None]:
    """A post drafted and an interaction received in every tenant: each subscription has something to send."""

    def trigger() -> None:
        for target, place in world.places.items():
            admin = world.admins[target]
            call = Call(world, place, world.people[Role.AGENCY_ADMIN], "Mutation.draftPost", target)
            _ok(admin, "draftPost", "DraftPostInput", INPUTS["DraftPostInput"](call), "post { id }")
            _ok(admin, "ingestInteractions", "IngestInteractionsInput", INPUTS["IngestInteractionsInput"](call),
                "accepted")

    return trigger


async def test_every_subscription_follows_the_role_matrix_and_streams_nothing_of_another_tenant(
    world: World, ops: list[Operation], server: str, rls_only: str
) -> None:
    todo = cases(ops, {"subscription"})
    found = await _subscriptions(server, world, todo, _events_everywhere(world))
    assert not found, "\n".join(found)
    # And again with row-level security alone.
    found = await _subscriptions(rls_only, world, todo, _events_everywhere(world))
    assert not found, "\n".join(found)


def test_every_mutation_follows_the_role_matrix_and_touches_nothing_of_another_tenant(
    world: World, ops: list[Operation], server: str
) -> None:
    todo = cases(ops, {"mutation"})
    # One operation's cases in order (an allowed role changes the object the next one acts on); operations in
    # parallel, each on objects of its own.
    by_operation: dict[str, list[Case]] = {}
    for c in todo:
        by_operation.setdefault(c.operation.name, []).append(c)
    with ThreadPoolExecutor(WORKERS) as pool:
        answers = [a for batch in pool.map(lambda cs: ask_all(server, world, cs, parallel=False),
                                           by_operation.values()) for a in batch]
    found = [p for a in answers for p in problems(world, a)]
    assert not found, "\n".join(found)
    # Nothing a refused or hidden call asked for happened: the elsewhere tenant is as it was planted.
    elsewhere = world.places[ELSEWHERE]
    history = world.admins[ELSEWHERE].data(
        "query($id: ID!) { tenant(id: $id) { history(first: 100, filter: {types: [\"AccessDenied\"]}) "
        "{ edges { node { type } } } } }", {"id": elsewhere.tenant_id})
    assert history["tenant"]["history"]["edges"] == []


def connections() -> list[tuple[str, str]]:
    """(name, document) of every connection of the schema a caller pages through with `after` (from the schema)."""
    schema = _schema()
    out = []
    for owner in ("Query", "Tenant"):
        t = schema.get_type(owner)
        assert isinstance(t, graphql.GraphQLObjectType)
        for name, f in t.fields.items():
            if "after" not in f.args:
                continue
            connection = graphql.get_named_type(f.type)
            assert isinstance(connection, graphql.GraphQLObjectType)
            edge = graphql.get_named_type(connection.fields["edges"].type)
            assert isinstance(edge, graphql.GraphQLObjectType)
            node = graphql.get_named_type(edge.fields["node"].type)
            assert isinstance(node, graphql.GraphQLObjectType)
            inner = "id" if "id" in node.fields else "position" if "position" in node.fields else "__typename"
            page = (f"{name}(first: 3, after: $after) {{ edges {{ cursor node {{ {inner} }} }} "
                    f"pageInfo {{ hasNextPage endCursor }} }}")
            if owner == "Query":
                out.append((f"Query.{name}", f"query($after: String) {{ {page} }}"))
            else:
                document = f"query($id: ID!, $after: String) {{ tenant(id: $id) {{ {page} }} }}"
                out.append((f"Query.tenant.{name}", document))
    return out


def test_every_connection_pages_to_its_end_for_every_role_and_stays_in_the_tenant(world: World) -> None:
    problems_ = []
    found = connections()
    assert {"Query.tenants", "Query.tenant.posts", "Query.tenant.history"} <= {n for n, _ in found}
    for name, document in found:
        field = name.rsplit(".", 1)[1]
        permission = P.SEE if name == "Query.tenants" else TENANT_FIELDS[field]
        for role in ROLES:
            if role not in MATRIX[permission]:
                continue
            person, after, seen, pages = world.people[role], None, [], 0
            while pages < 40:
                body = person.client.execute(document, {"id": world.places[OWN].tenant_id, "after": after})
                pages += 1
                leaked = leaks(world, role, json.dumps(after), json.dumps(body))
                problems_ += [f"{name} as {role.name}, page {pages}: leaked {m}" for m in leaked]
                if body.get("errors"):
                    problems_.append(f"{name} as {role.name}, page {pages}: {body['errors']}")
                    break
                data = body["data"]
                value = data[field] if name == "Query.tenants" else data["tenant"][field]
                seen += [json.dumps(e["node"]) for e in value["edges"]]
                if not value["pageInfo"]["hasNextPage"]:
                    break
                after = value["pageInfo"]["endCursor"]
            if len(seen) != len(set(seen)):
                problems_.append(f"{name} as {role.name}: an item on two pages")
            if field in ("posts", "moderationQueue", "history") and pages < 2:  # the world has more than a page
                problems_.append(f"{name} as {role.name}: {len(seen)} items on {pages} page")
    assert not problems_, "\n".join(problems_)


# ---------------------------------------------------------------- crossed ids: the caller's tenant, another's objects
# Ids an operation names besides the object it acts on (its tenant, post or interaction): each must name an object
# of that same tenant. Here they name objects of the other agency's tenant, one id at a time.
PRIMARY = {"id", "tenantId", "postId", "interactionId"}


@dataclass
class Crossing:
    """What a crossed-id factory knows: the caller's own tenant, the foreign one, the caller."""

    own: Place
    foreign: Place
    role: Role


def _draft(x: Crossing, **extra: Any) -> dict[str, Any]:
    variant = {"channelId": x.own.channel, "body": f"{x.own.tag}-crossed"}
    return {"input": {"tenantId": x.own.tenant_id, "variants": [variant], **extra}}


def _item(x: Crossing, **extra: Any) -> dict[str, Any]:
    return {"channelId": x.own.channel, "kind": "COMMENT", "externalId": uuid.uuid4().hex, "author": "@x",
            "text": f"{x.own.tag}-crossed", "receivedAt": now(-0.01), **extra}


def _observation(x: Crossing, **extra: Any) -> dict[str, Any]:
    return {"channelId": x.own.channel, "metric": "followers", "value": 1, "at": now(-0.1), **extra}


# For each operation with such ids: its arguments, once per id, that id naming the foreign tenant's object.
CROSSED: dict[str, Callable[[Crossing], list[dict[str, Any]]]] = {
    # People and keys belong to an agency, not a tenant: the sibling tenant's are the agency admin's to manage.
    "Mutation.issueApiKey": lambda x: [{"input": {"userId": x.foreign.people[x.role], "name": "crossed"}}]
    if x.foreign.agency_id != x.own.agency_id else [],
    "Mutation.revokeApiKey": lambda x: [{"input": {"apiKeyId": x.foreign.api_key}}]
    if x.foreign.agency_id != x.own.agency_id else [],
    "Mutation.revokeMembership": lambda x: [{"input": {
        "userId": x.foreign.people[x.role], "role": "CLIENT_VIEWER", "tenantId": x.own.tenant_id}}],
    "Mutation.reviseStrategy": lambda x: [{"input": {
        "tenantId": x.own.tenant_id, "reason": "crossed", "objectives": [], "personas": [], "editorialLine": {}, **part,
    }} for part in (
        {"objectives": [{"title": "o", "intent": "ACTION", "metric": "donations", "target": 1,
                         "channelId": x.foreign.channel}]},
        {"personas": [{"name": "p", "channelIds": [x.foreign.channel]}]},
        {"editorialLine": {"postsPerWeek": [{"channelId": x.foreign.channel, "postsPerWeek": 1}]}},
    )],
    "Mutation.createCampaign": lambda x: [{"input": {
        "tenantId": x.own.tenant_id, "name": "crossed", "objectiveIds": [x.foreign.objective]}}],
    "Mutation.draftPost": lambda x: [
        {"input": {"tenantId": x.own.tenant_id, "variants": [{"channelId": x.foreign.channel, "body": "crossed"}]}},
        _draft(x, campaignId=x.foreign.campaign), _draft(x, objectiveId=x.foreign.objective),
        _draft(x, personaId=x.foreign.persona)],
    "Mutation.editPost": lambda x: [{"input": {
        "postId": x.own.posts["editPost"], "variants": [{"channelId": x.foreign.channel, "body": "crossed"}]}}],
    "Mutation.setModerationPolicy": lambda x: [{"input": {
        "tenantId": x.own.tenant_id, "responseTargetMinutes": 30, "crisisResponseTargetMinutes": 10,
        "rules": [{"name": "crossed", "action": "HIDE", "channels": [x.foreign.channel]}]}}],
    "Mutation.ingestInteractions": lambda x: [
        {"input": {"tenantId": x.own.tenant_id, "items": [_item(x, channelId=x.foreign.channel)]}},
        {"input": {"tenantId": x.own.tenant_id, "items": [_item(x, inReplyToPostId=x.foreign.posts["shown"])]}}],
    "Mutation.assignInteraction": lambda x: [{"input": {
        "interactionId": x.own.interactions["assignInteraction"], "assigneeId": x.foreign.moderator}}],
    "Mutation.recordMetrics": lambda x: [
        {"input": {"tenantId": x.own.tenant_id, "observations": [_observation(x, channelId=x.foreign.channel)]}},
        {"input": {"tenantId": x.own.tenant_id, "observations": [_observation(x, postId=x.foreign.posts["shown"])]}}],
    "Tenant.posts": lambda x: [{"filter": {"channelId": x.foreign.channel}},
                               {"filter": {"campaignId": x.foreign.campaign}}],
    "Tenant.moderationQueue": lambda x: [{"filter": {"channelId": x.foreign.channel}},
                                         {"filter": {"assigneeId": x.foreign.moderator}}],
    "Tenant.metricSeries": lambda x: [{"metric": "followers", "from": now(-7), "to": now(1),
                                       "channelId": x.foreign.channel}],
    "Tenant.history": lambda x: [{"filter": {"aggregateId": x.foreign.posts["shown"]}}],
}


def _ids_in(t: graphql.GraphQLInputType, path: tuple[str, ...], seen: frozenset[str]) -> list[tuple[str, ...]]:
    named = graphql.get_named_type(t)
    if isinstance(named, graphql.GraphQLScalarType):
        return [path] if named.name == "ID" else []
    if isinstance(named, graphql.GraphQLInputObjectType) and named.name not in seen:
        return [p for n, f in named.fields.items() for p in _ids_in(f.type, (*path, n), seen | {named.name})]
    return []


def crossed_fields(schema: graphql.GraphQLSchema) -> dict[str, graphql.GraphQLField]:
    """Every field (of Mutation and Tenant) whose arguments name objects besides the one it acts on."""
    out = {}
    for owner in ("Query", "Mutation", "Subscription", "Tenant"):
        t = schema.get_type(owner)
        assert isinstance(t, graphql.GraphQLObjectType)
        for name, f in t.fields.items():
            paths = [p for a, arg in f.args.items() for p in _ids_in(arg.type, (a,), frozenset())]
            if any(len(p) > 2 or p[-1] not in PRIMARY for p in paths):
                out[f"{owner}.{name}"] = f
    return out


def crossed_cases(world: World) -> list[tuple[str, Role, str, dict[str, Any], Rule]]:
    """(field, role, document, variables, rule) of every crossed call, with the objects of the sibling tenant (which
    the agency admin sees, but which still belong to another tenant) and of the other agency's."""
    schema = _schema()
    out = []
    for qualified, f in crossed_fields(schema).items():
        owner, name = qualified.split(".")
        rule = Rule((TENANT_FIELDS[name],)) if owner == "Tenant" else ROOT_RULES[qualified]
        for role, foreign in ((role, foreign) for role in ROLES for foreign in (SIBLING, ELSEWHERE)):
            for arguments in CROSSED[qualified](Crossing(world.places[OWN], world.places[foreign], role)):
                defs = ", ".join(f"${a}: {f.args[a].type}" for a in arguments)
                args = ", ".join(f"{a}: ${a}" for a in arguments)
                if owner == "Tenant":
                    document = (f"query($tenant: ID!, {defs}) {{ tenant(id: $tenant) {{ {name}({args}) "
                                f"{selection(f.type, ('Tenant',), 1, 2)} }} }}")
                    out.append((qualified, role, document, {**arguments, "tenant": world.places[OWN].tenant_id},
                                rule))
                else:
                    document = f"mutation({defs}) {{ {name}({args}) {selection(f.type, (), 0, 2)} }}"
                    out.append((qualified, role, document, arguments, rule))
    return out


def crossed_problem(world: World, qualified: str, role: Role, rule: Rule, body: dict[str, Any],
                    request: str, text: str) -> list[str]:
    allowed = any(role in MATRIX[p] for p in rule.permissions)
    where = f"{qualified} as {role.name}, crossed ids (expected {'refused' if allowed else 'forbidden'})"
    out = [f"{where}: leaked {m}" for m in leaks(world, role, request, text)]
    codes = [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
    data = body.get("data") or {}
    if not allowed:
        return out if set(codes) == {"FORBIDDEN"} else [*out, f"{where}: {text[:300]}"]
    if qualified.startswith("Tenant."):
        value = (data.get("tenant") or {}).get(qualified.split(".")[1])
        empty = value == [] or (isinstance(value, dict) and value.get("edges") == [])
        return out if not codes and empty else [*out, f"{where}: {text[:300]}"]
    value = data.get(qualified.split(".")[1])
    refused = (codes and set(codes) <= {"NOT_FOUND", "BAD_USER_INPUT"}) or (
        not codes and value is not None and value["userErrors"])
    return out if refused else [*out, f"{where}: {text[:300]}"]


def test_ids_of_another_tenant_inside_an_input_are_refused_and_show_nothing(world: World, server: str) -> None:
    schema = _schema()
    assert set(crossed_fields(schema)) == set(CROSSED), "every field naming other objects needs its crossed ids"
    todo = crossed_cases(world)

    def run(case: tuple[str, Role, str, dict[str, Any], Rule]) -> list[str]:
        qualified, role, document, variables, rule = case
        request = json.dumps({"query": document, "variables": variables})
        response = _HTTP.post(server, content=request, headers={
            "content-type": "application/json", "authorization": f"Bearer {world.people[role].client.token}"})
        if response.status_code != 200:
            return [f"{qualified} as {role.name}: HTTP {response.status_code}"]
        return crossed_problem(world, qualified, role, rule, response.json(), request, response.text)

    with ThreadPoolExecutor(WORKERS) as pool:
        found = [p for problems_ in pool.map(run, todo) for p in problems_]
    assert not found, "\n".join(found)
    print(f"\ncrossed ids: {len(CROSSED)} fields, {len(todo)} cases")


def test_matrix_size(ops: list[Operation]) -> None:
    """Operations x roles x targets, for the record (pytest -s shows it)."""
    by_kind = {kind: cases(ops, {kind}) for kind in ("query", "mutation", "subscription")}
    total = sum(len(v) for v in by_kind.values())
    print(f"\nisolation matrix: {len(ops)} operations, {len(ROLES)} roles, {len(TARGETS)} targets: {total} cases "
          f"({', '.join(f'{len(v)} {k}' for k, v in by_kind.items())}); reads run twice")
    assert total > len(ops) * len(ROLES)
