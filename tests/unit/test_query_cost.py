"""The cost model of api/cost.py, on the real schema (README "Abuse limits" quotes these figures)."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLSchema, parse

from api.context import ApiConfig
from api.cost import operation_cost
from api.schema import build_schema

PAGE = "posts(first: 100) { edges { node { variants { channel { id } } approvals { by { email } } } } }"


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return build_schema(ApiConfig())._schema


def cost(schema: GraphQLSchema, document: str, variables: dict[str, Any] | None = None) -> int:
    return operation_cost(schema, parse(document), None, variables)


def test_a_page_costs_the_objects_it_may_return(schema: GraphQLSchema) -> None:
    # tenant 1, connection 1, edges 100, posts 100, variants 1,000, channels 1,000, approvals 1,000, users 1,000
    assert cost(schema, '{ tenant(id: "t") { ' + PAGE + " } }") == 4_202


def test_nested_pages_multiply(schema: GraphQLSchema) -> None:
    assert cost(schema, "{ tenants(first: 100) { edges { node { " + PAGE + " } } } }") == 420_301


def test_scalars_cost_nothing_and_page_info_is_one_object(schema: GraphQLSchema) -> None:
    assert cost(schema, "{ tenants(first: 50) { totalCount pageInfo { hasNextPage } } }") == 2


def test_first_comes_from_variables_or_the_default_and_is_capped(schema: GraphQLSchema) -> None:
    document = "query($n: Int) { tenants(first: $n) { edges { node { id } } } }"
    assert cost(schema, document, {"n": 7}) == 1 + 7 + 7
    assert cost(schema, document, {}) == 1 + 20 + 20  # the argument's default
    assert cost(schema, document, {"n": 10_000}) == 1 + 100 + 100  # a bigger page is refused by the resolver


def test_fragments_count_and_introspection_does_not(schema: GraphQLSchema) -> None:
    document = """{ __schema { types { fields { name } } } tenants(first: 10) { edges { ...E } } }
    fragment E on TenantEdge { node { ... on Tenant { channels { id } } } }"""
    assert cost(schema, document) == 1 + 10 + 10 + 100


def test_expensive_fields_and_mutations_weigh_more(schema: GraphQLSchema) -> None:
    assert cost(schema, '{ tenant(id: "t") { verifyHistory { ok } } }') == 1 + 50
    mutation = 'mutation { createTenant(input: {name: "n", kind: NGO, timezone: "UTC"}) { tenant { id } } }'
    assert cost(schema, mutation) == 10 + 1
