"""Fuzzing: operations generated from the schema (hypothesis-graphql) against the running API, as several roles.

Whatever comes in, the answer is never a 5xx, never an INTERNAL error, and never shows anything of a tenant the
caller may not see (the tenants of tests/e2e/test_isolation_matrix.py's world, with their markers). Ids are drawn
from every tenant of that world (the caller's own and the others'), so the generated operations also cross ids
between tenants, besides random ones; date-times and JSON come valid and invalid.

PARVIS_FUZZ_EXAMPLES (default 300) is the number of operations of a run, split over the roles; a longer run:

    PARVIS_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/e2e/test_fuzz.py
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema, nodes

from domain.roles import Role
from tests.e2e.test_isolation_matrix import OWN, Place, World, build_world, leaks, stray_memberships

EXAMPLES = int(os.environ.get("PARVIS_FUZZ_EXAMPLES", "300"))
ROLES = (Role.AGENCY_ADMIN, Role.COMMUNITY_MANAGER, Role.CLIENT_VIEWER, Role.AUDITOR)
_HTTP = httpx.Client(timeout=60)
# Text that has broken servers: NUL, a lone surrogate, SQL and LIKE syntax, markup, right-to-left, long text.
NASTY = ["", " ", "\x00", "a\x00b", "\ud800", "x\udfff", "%", "_", "\\", "'", "' OR 1=1 --", "\"; DROP TABLE x; --",
         "<script>alert(1)</script>", "\u202etxet", "💥🔥", "NaN", "-1", "null", "Europe/Paris", "a" * 5000]


@pytest.fixture(scope="module")
def world(server: str, domain: Any) -> World:
    return build_world(server, domain)


def _ids(place: Place) -> list[str]:
    # Not the agency admins' ids: an admin revoking its own role would sign the fuzzer out for the rest of the run.
    return [place.tenant_id, place.agency_id, place.channel, place.campaign, place.objective, place.persona,
            place.report, place.moderator, *place.posts.values(), *place.interactions.values(),
            *place.people.values()]


def _global(type_name: str, raw: str) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{raw}".encode()).decode().rstrip("=")


def ids(world: World) -> st.SearchStrategy[graphql.ValueNode]:
    """Ids of every tenant of the world (tenants' more often: most operations start from one), forged ones (a real
    object under another type's name), and random text."""
    real = [i for place in world.places.values() for i in _ids(place)]
    tenants = [place.tenant_id for place in world.places.values()]
    types = ["Tenant", "Post", "Channel", "Campaign", "Interaction", "Report", "User", "Agency", "Objective"]
    forged = st.builds(lambda t, i: _global(t, base64.urlsafe_b64decode(i + "=" * (-len(i) % 4)).decode()
                                             .split(":", 1)[1]), st.sampled_from(types), st.sampled_from(real))
    return st.one_of(st.sampled_from(tenants), st.sampled_from(real), forged, st.text(max_size=40)).map(nodes.String)


def texts() -> st.SearchStrategy[graphql.ValueNode]:
    return st.one_of(st.text(max_size=40), st.sampled_from(NASTY)).map(nodes.String)


def date_times() -> st.SearchStrategy[graphql.ValueNode]:
    """Instants with and without an offset, far and near, and text that is no date at all."""
    near = datetime(2026, 1, 1, tzinfo=UTC)
    instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                            timezones=st.sampled_from([UTC, None]))
    close = st.integers(-400, 400).map(lambda d: near + timedelta(days=d))
    return st.one_of(instants, close, close, st.text(max_size=30)).map(
        lambda v: nodes.String(v.isoformat() if isinstance(v, datetime) else v))


def json_values() -> st.SearchStrategy[graphql.ValueNode]:
    leaves = st.one_of(st.text(max_size=20).map(nodes.String), st.integers(-(2**31), 2**31 - 1).map(nodes.Int),
                       st.booleans().map(nodes.Boolean), st.just(nodes.Null))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(nodes.List),
        st.dictionaries(st.from_regex(r"[a-z][a-zA-Z0-9]{0,8}", fullmatch=True), inner, max_size=3).map(
            lambda d: nodes.Object([graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v)
                                    for k, v in d.items()]))), max_leaves=6)


def schema() -> graphql.GraphQLSchema:
    from api.context import ApiConfig
    from api.schema import build_schema

    return build_schema(ApiConfig(development=True))._schema


# Ending the caller's own sessions would sign the fuzzer out for the rest of the run (and the next tests):
# `tests/e2e/test_credentials_api.py` and the isolation matrix (with sessions of their own) cover these two.
SESSION_ENDING = {"signOut", "changePassword"}


def fuzzed_fields(s: graphql.GraphQLSchema) -> list[str]:
    """Every root field of Query and Mutation but those that end the caller's sessions."""
    roots = [t for t in (s.query_type, s.mutation_type) if t is not None]
    return [name for t in roots for name in t.fields if name not in SESSION_ENDING]


def problems(world: World, role: Role, query: str, response: httpx.Response) -> list[str]:
    """What must never be: a 5xx, an INTERNAL (or code-less) error, something of a tenant the role cannot see."""
    out = []
    if response.status_code >= 500 or response.status_code == 429:
        out.append(f"HTTP {response.status_code}: {response.text[:500]}")
    try:
        body = response.json()
    except ValueError:
        return [*out, f"not JSON: {response.text[:500]}"]
    for error in body.get("errors") or []:
        if (error.get("extensions") or {}).get("code") in ("INTERNAL", None, "RATE_LIMITED"):
            out.append(f"error {error}")
    out += [f"leaked {m}" for m in leaks(world, role, query, response.text)]
    if role is not Role.AGENCY_ADMIN:
        out += [f"a membership of a tenant it cannot see {m}" for m in stray_memberships(body)]
    return out


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_no_generated_operation_breaks_the_api_or_shows_another_tenant(world: World, server: str,
                                                                       role: Role) -> None:
    headers = {"authorization": f"Bearer {world.people[role].client.token}", "content-type": "application/json"}
    graphql_schema = schema()
    scalars = {"ID": ids(world), "DateTime": date_times(), "JSON": json_values(), "String": texts()}
    strategy = from_schema(graphql_schema, fields=fuzzed_fields(graphql_schema), custom_scalars=scalars)

    @settings(max_examples=max(1, EXAMPLES // len(ROLES)), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(query=strategy)
    def fuzz(query: str) -> None:
        # ASCII JSON: a lone surrogate in the text is sent escaped, as a client may.
        response = _HTTP.post(server, content=json.dumps({"query": query}), headers=headers)
        found = problems(world, role, query, response)
        assert not found, f"{role.name} sent\n{query}\n" + "\n".join(found)

    fuzz()


def test_after_the_fuzzing_the_read_models_still_follow_the_events(world: World) -> None:
    """Nothing the fuzzer sent stopped a projection (an event no read model can write would stop it for good)."""
    admin = world.admins[OWN]
    created = admin.data("mutation { createTenant(input: {name: \"after the fuzz\", kind: NGO, timezone: \"UTC\"}) "
                         "{ tenant { name } consistent } }")["createTenant"]
    assert created == {"tenant": {"name": "after the fuzz"}, "consistent": True}
