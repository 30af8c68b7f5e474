"""The root schema: every feature's queries, mutations and subscriptions, and the limits."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import strawberry
from graphql import FieldNode, GraphQLError, get_operation_ast
from graphql.validation import NoSchemaIntrospectionCustomRule
from prometheus_client import Histogram
from starlette.websockets import WebSocket
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from api.context import ApiConfig
from api.cost import CostLimiter
from api.directory.credentials import CredentialsMutation, CredentialsQuery
from api.directory.mutations import DirectoryMutation
from api.directory.queries import DirectoryQuery
from api.directory.types import Agency, Channel, Tenant, User
from api.errors import is_public
from api.history.subscriptions import HistorySubscription
from api.inputs import DateTime, StorableText
from api.metrics.mutations import MetricsMutation
from api.moderation.mutations import ModerationMutation
from api.moderation.subscriptions import ModerationSubscription
from api.moderation.types import Interaction
from api.publishing.mutations import PublishingMutation
from api.publishing.subscriptions import PublishingSubscription
from api.publishing.types import Campaign, Post
from api.reports.mutations import ReportsMutation
from api.throttle import WebSocketThrottle
from api.tracing import Tracing
from api.unavailable import UNAVAILABLE_MESSAGE, UNREACHABLE

log = logging.getLogger("parvis.api")

OPERATION_SECONDS = Histogram("parvis_graphql_operation_seconds", "GraphQL operation latency", ["operation", "type"])


@strawberry.type
class Query(DirectoryQuery, CredentialsQuery):
    pass


@strawberry.type
class Mutation(
    DirectoryMutation, CredentialsMutation, PublishingMutation, ModerationMutation, MetricsMutation, ReportsMutation
):
    pass


@strawberry.type
class Subscription(HistorySubscription, PublishingSubscription, ModerationSubscription):
    pass


class RequestLifecycle(SchemaExtension):
    """Records each operation's latency (the view closes the request's read session)."""

    async def on_operation(self) -> AsyncIterator[None]:
        start = time.perf_counter()
        yield
        ctx = self.execution_context.context
        if isinstance(getattr(ctx, "request", None), WebSocket):
            # Over a WebSocket the context lives as long as the connection: each operation's read session ends
            # with it (a subscription that failed or ended included), so no connection is held for the socket.
            await ctx.close_session()
        # `operation_type` raises when the document did not parse (a syntax error, too many tokens).
        parsed = self.execution_context.graphql_document is not None
        op_type = self.execution_context.operation_type.value if parsed else "unknown"
        OPERATION_SECONDS.labels(_root_field(self.execution_context), op_type).observe(time.perf_counter() - start)


def _root_field(context: ExecutionContext) -> str:
    """The label of an operation: its first root field, a name of the schema. Not the operation's name, which the
    client chooses: any number of names would make as many series in every process's memory."""
    if context.graphql_document is None or context.pre_execution_errors:
        return "invalid"
    try:
        operation = get_operation_ast(context.graphql_document, context.operation_name)
    except GraphQLError:
        return "invalid"
    if operation is None:
        return "invalid"
    for selection in operation.selection_set.selections:
        if isinstance(selection, FieldNode):
            return selection.name.value
    return "fragment"


class SubscriptionsOverWebSocket(SchemaExtension):
    """A subscription sent over plain HTTP is a request error: they are served over graphql-transport-ws only."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        request = getattr(ctx.context, "request", None)
        if ctx.operation_type is OperationType.SUBSCRIPTION and request is not None and request.scope["type"] == "http":
            raise GraphQLError(
                "subscriptions are served over WebSocket (graphql-transport-ws) only",
                extensions={"code": "BAD_USER_INPUT"},
            )
        yield


class MaskInternalErrors(MaskErrors):
    """Unexpected errors reach the client as INTERNAL with no detail; the detail goes to the log."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        # The database out of reach (restarting, failing over) is no bug: say so, and when to retry (the codes
        # of the contract stay as they are).
        unavailable = isinstance(error.original_error, UNREACHABLE)
        return GraphQLError(
            UNAVAILABLE_MESSAGE if unavailable else "Internal server error",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL", "retryAfter": 1} if unavailable else {"code": "INTERNAL"},
        )


class QueryCount(SchemaExtension):
    """Outside production: how many SQL queries the operation's read session ran (DataLoaders keep it fixed)."""

    def get_results(self) -> dict[str, Any]:
        session = getattr(self.execution_context.context, "_session", None)
        return {"sqlQueries": session.queries if session is not None else 0}


def _should_mask(error: GraphQLError) -> bool:
    if is_public(error):
        return False
    log.error("internal error", exc_info=error.original_error)
    return True


class PerEventExecution(StrawberryGraphQLCoreExecutionContext):
    """graphql-core 3.3 makes each subscription event's executor as a copy of the subscription's, sharing its memo
    of collected subfields, which is keyed by the identity of lists built anew for every event and keeps them
    alive: the memo grew by about 1 KB per event for as long as the subscription lasted (the soak's API grew
    from 127 to 177 MB in ten minutes). Each event gets a memo of its own, as graphql-core 3.2 gave it."""

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return executor


class ParvisSchema(strawberry.Schema):
    """Expected errors (auth, limits, bad input) are answers, not incidents: only masked ones are logged."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        return None


# Distinct documents whose parse and validation are kept (front ends send the same few again and again; a bounded
# LRU, so unique documents cannot grow memory). Variables are not part of either: the cost, which depends on them,
# is computed for each request.
DOCUMENT_CACHE = 512


def build_schema(config: ApiConfig) -> strawberry.Schema:
    # The limits' validation rules are made once, so that a validation can be reused: a rule class made per request
    # (as the limiters make them when built per request) would make every request's rules new to the cache.
    rules = [
        *QueryDepthLimiter(max_depth=config.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=config.max_aliases).validation_rules,
    ]
    if not config.development:
        rules.append(NoSchemaIntrospectionCustomRule)
    extensions: list[Any] = [
        Tracing,
        RequestLifecycle,
        lambda: MaxTokensLimiter(max_token_count=config.max_tokens),
        lambda: ParserCache(maxsize=DOCUMENT_CACHE),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=DOCUMENT_CACHE),
        SubscriptionsOverWebSocket,
        StorableText,
        lambda: CostLimiter(max_cost=config.max_cost, max_page=config.max_page),
        WebSocketThrottle,
        lambda: MaskInternalErrors(should_mask_error=_should_mask),
    ]
    if config.development:
        extensions.append(QueryCount)
    return ParvisSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Tenant, Agency, User, Channel, Post, Campaign, Interaction],
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=not config.development, scalar_map={datetime: DateTime}),
        execution_context_class=PerEventExecution,
    )
