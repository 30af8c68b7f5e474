"""The query cost limit: an estimate of the objects an operation may load, refused before it runs.

Cost model (the README's "Abuse limits" gives it to clients):
- a field that returns an object, or a list of objects, costs its weight (1 unless listed in WEIGHTS) for each
  object it may return; scalar and enum fields cost nothing (the depth and token limits bound them);
- a field with a `first` argument returns pages of `first` objects (its default when omitted, at most the page
  cap): its `edges` and `nodes` count `first` objects each;
- any other list of objects counts LIST_SIZES' estimate for that field, or DEFAULT_LIST_SIZE;
- sizes multiply down the tree: `posts(first: 50) { edges { node { variants { channel { id } } } } }` is
  1 (connection) + 50 (edges) + 50 (posts) + 500 (variants) + 500 (channels) = 1,101;
- every fragment's selections count, even when only one of them can apply (an upper bound);
- introspection fields (`__schema`, `__type`) cost nothing: introspection is off in production.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_interface_type,
    is_leaf_type,
    is_list_type,
    is_object_type,
)
from graphql.language import DocumentNode
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension

DEFAULT_LIST_SIZE = 10
# Lists known to run long: a calendar range, a metric series, a tenant's past state.
LIST_SIZES: Mapping[tuple[str, str], int] = {
    ("Tenant", "calendar"): 100,
    ("Tenant", "metricSeries"): 100,
    ("TenantSnapshot", "posts"): 100,
    ("TenantSnapshot", "interactions"): 100,
}
# Fields that cost more than reading a row: replays, chain checks, aggregates.
WEIGHTS: Mapping[tuple[str, str], int] = {
    ("Tenant", "asOf"): 100,
    ("Tenant", "verifyHistory"): 50,
    ("Tenant", "strategyAt"): 5,
    ("Tenant", "kpis"): 5,
    ("Tenant", "moderationStats"): 5,
    ("Tenant", "metricSeries"): 5,
    ("Tenant", "crisisSuggestion"): 5,
}
MUTATION_WEIGHT = 10
PAGED = ("edges", "nodes")


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    max_page: int = 100,
) -> int:
    """The cost of the operation a request selects (0 when none is found: validation reports that)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    walker = _Walker(schema, fragments, dict(variables or {}), max_page)
    return walker.selection(operation.selection_set, root, 1, None, root_weight=_root_weight(operation))


def _root_weight(operation: OperationDefinitionNode) -> int | None:
    return MUTATION_WEIGHT if operation.operation.value == "mutation" else None


class _Walker:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        max_page: int,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.max_page = max_page

    def selection(
        self,
        selection_set: SelectionSetNode | None,
        parent: GraphQLNamedType,
        multiplier: int,
        page: int | None,
        root_weight: int | None = None,
        seen: frozenset[str] = frozenset(),
    ) -> int:
        total = 0
        for field, owner in self._fields(selection_set, parent, seen):
            total += self.field(field, owner, multiplier, page, root_weight)
        return total

    def field(
        self, node: FieldNode, parent: GraphQLNamedType, multiplier: int, page: int | None, root_weight: int | None
    ) -> int:
        name = node.name.value
        if name.startswith("__"):
            return 0
        definition: GraphQLField | None = getattr(parent, "fields", {}).get(name)
        if definition is None:
            return 0
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        size = 1
        if is_list_type(get_nullable_type(definition.type)):
            estimate = LIST_SIZES.get((parent.name, name), DEFAULT_LIST_SIZE)
            size = page if name in PAGED and page is not None else estimate
        count = multiplier * size
        weight = root_weight if root_weight is not None else WEIGHTS.get((parent.name, name), 1)
        child_page = self._first(definition, node) if "first" in definition.args else None
        return weight * count + self.selection(node.selection_set, named, count, child_page)

    def _first(self, definition: GraphQLField, node: FieldNode) -> int:
        value: Any = None
        for argument in node.arguments or ():
            if argument.name.value != "first":
                continue
            if isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
            elif isinstance(argument.value, VariableNode):
                value = self.variables.get(argument.value.name.value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            # Omitted, null or bad (validation or the resolver refuses a bad one): the argument's default.
            default = definition.args["first"].default_value
            value = default if isinstance(default, int) else DEFAULT_LIST_SIZE
        return min(int(value), self.max_page)

    def _fields(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType, seen: frozenset[str]
    ) -> Iterator[tuple[FieldNode, GraphQLNamedType]]:
        """The fields of a selection set, fragments flattened, each with the type that declares it."""
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection, parent
            elif isinstance(selection, InlineFragmentNode):
                owner = self._type(selection.type_condition.name.value if selection.type_condition else None, parent)
                yield from self._fields(selection.selection_set, owner, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue
                owner = self._type(fragment.type_condition.name.value, parent)
                yield from self._fields(fragment.selection_set, owner, seen | {name})

    def _type(self, name: str | None, default: GraphQLNamedType) -> GraphQLNamedType:
        found = self.schema.get_type(name) if name else None
        if found is not None and (is_object_type(found) or is_interface_type(found)):
            return found
        return default


class CostLimiter(SchemaExtension):
    """Refuses an operation whose cost is over the limit with QUERY_TOO_COMPLEX, before it runs."""

    def __init__(self, *, max_cost: int, max_page: int = 100) -> None:
        self.max_cost = max_cost
        self.max_page = max_page

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        if self.max_cost > 0 and ctx.graphql_document is not None:
            cost = operation_cost(
                ctx.schema._schema, ctx.graphql_document, ctx.operation_name, ctx.variables, self.max_page
            )
            if cost > self.max_cost:
                raise GraphQLError(
                    f"the operation costs {cost}, more than the limit of {self.max_cost}: ask for smaller pages",
                    extensions={"code": "QUERY_TOO_COMPLEX", "cost": cost, "maxCost": self.max_cost},
                )
        yield
