"""The root schema: every feature's queries, mutations and subscriptions, and the limits."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from prometheus_client import Histogram
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig

from api.context import ApiConfig
from api.directory.mutations import DirectoryMutation
from api.directory.queries import DirectoryQuery
from api.directory.types import Agency, Channel, Tenant, User
from api.errors import is_public
from api.history.subscriptions import HistorySubscription
from api.metrics.mutations import MetricsMutation
from api.moderation.mutations import ModerationMutation
from api.moderation.subscriptions import ModerationSubscription
from api.moderation.types import Interaction
from api.publishing.mutations import PublishingMutation
from api.publishing.subscriptions import PublishingSubscription
from api.publishing.types import Campaign, Post

log = logging.getLogger("parvis.api")

OPERATION_SECONDS = Histogram("parvis_graphql_operation_seconds", "GraphQL operation latency", ["operation", "type"])


@strawberry.type
class Query(DirectoryQuery):
    pass


@strawberry.type
class Mutation(DirectoryMutation, PublishingMutation, ModerationMutation, MetricsMutation):
    pass


@strawberry.type
class Subscription(HistorySubscription, PublishingSubscription, ModerationSubscription):
    pass


class RequestLifecycle(SchemaExtension):
    """Records each operation's latency (the view closes the request's read session)."""

    def on_operation(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        name = self.execution_context.operation_name or "anonymous"
        op_type = self.execution_context.operation_type.value if self.execution_context.operation_type else "unknown"
        OPERATION_SECONDS.labels(name[:64], op_type).observe(time.perf_counter() - start)


class MaskInternalErrors(MaskErrors):
    """Unexpected errors reach the client as INTERNAL with no detail; the detail goes to the log."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return GraphQLError(
            "Internal server error",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL"},
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


class ParvisSchema(strawberry.Schema):
    """Expected errors (auth, limits, bad input) are answers, not incidents: only masked ones are logged."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        return None


def build_schema(config: ApiConfig) -> strawberry.Schema:
    extensions: list[Any] = [
        RequestLifecycle,
        lambda: QueryDepthLimiter(max_depth=config.max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=config.max_aliases),
        lambda: MaxTokensLimiter(max_token_count=config.max_tokens),
        lambda: MaskInternalErrors(should_mask_error=_should_mask),
    ]
    if not config.development:
        extensions.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    else:
        extensions.append(QueryCount)
    return ParvisSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Tenant, Agency, User, Channel, Post, Campaign, Interaction],
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=not config.development),
    )
