"""The Starlette application: /graphql (HTTP and graphql-transport-ws), health, readiness, metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import redis.asyncio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from api.auth import Tokens, principal_from_token
from api.context import ApiConfig, Context, SecretsPort, Services
from api.errors import ApiError
from api.live import Live
from api.schema import build_schema
from domain.app import Parvis
from projections.checkpoints import Checkpoints

log = logging.getLogger("parvis.api")


class ParvisGraphQL(GraphQL[Context, None]):
    """The GraphQL view: builds the context, authenticates, closes the read session after each request."""

    def __init__(self, services_ref: Callable[[], Services], config: ApiConfig) -> None:
        super().__init__(
            build_schema(config),
            graphql_ide="graphiql" if config.development else None,
            allow_queries_via_get=False,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            allowed_origins=config.allowed_origins,
            max_subscriptions_per_connection=20,
        )
        self._services = services_ref

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket | None = None) -> Context:
        ctx = Context(
            services=self._services(), request=request, response=response if isinstance(response, Response) else None
        )
        if isinstance(request, Request):
            header = request.headers.get("authorization")
            if header:
                try:
                    ctx.principal = await _authenticate(ctx, header)
                except ApiError as exc:
                    ctx.auth_error = exc.message
        return ctx

    async def on_ws_connect(self, context: Context) -> Any:
        params = context.connection_params or {}
        value = params.get("Authorization") or params.get("authorization") if isinstance(params, dict) else None
        if not isinstance(value, str):
            raise ConnectionRejectionError()
        try:
            context.principal = await _authenticate(context, value)
        except ApiError:
            raise ConnectionRejectionError() from None
        return None

    async def process_result(self, request: Request, result: Any) -> Any:
        """Every error carries a code: the document or its variables are bad input, or the limits refused it."""
        response = await super().process_result(request, result)
        for error in response.get("errors") or []:
            extensions = error.setdefault("extensions", {})
            extensions.setdefault("code", _code_of(str(error.get("message", ""))))
        return response

    async def execute_operation(
        self,
        request: Any,
        request_adapter: Any,
        request_data: Any,
        context: Context,
        root_value: Any,
        sub_response: Any,
    ) -> Any:
        try:
            return await super().execute_operation(
                request, request_adapter, request_data, context, root_value, sub_response
            )
        finally:
            if not isinstance(request, WebSocket):
                await context.close()


# Messages of strawberry's limiters (depth, aliases, tokens).
_LIMITS = ("exceeds maximum operation depth", "aliases found. Allowed", "Document contains more than")


def _code_of(message: str) -> str:
    return "QUERY_TOO_COMPLEX" if any(limit in message for limit in _LIMITS) else "BAD_USER_INPUT"


async def _authenticate(ctx: Context, header: str) -> Any:
    from api.errors import Unauthenticated

    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise Unauthenticated("use 'Authorization: Bearer <token>'")
    async with ctx.services.pool.acquire() as conn:
        return await principal_from_token(conn, ctx.services.tokens, value.strip())


class BodyLimit:
    """Refuse request bodies over the limit with 413, before they are read whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await PlainTextResponse("request body too large", status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await PlainTextResponse("request body too large", status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(
    config: ApiConfig,
    *,
    database_url: str,
    domain_factory: Callable[[], Parvis],
    secrets: SecretsPort,
    token_key: bytes,
    token_ttl: int,
    read_models: Sequence[str] = (),
    pool_size: int = 10,
    hook_key: bytes = b"",
    redis_url: str | None = None,
    checkpoint_namespace: str = "parvis",
    checkpoint_public_key: bytes = b"",
) -> Starlette:
    """Build the API; connections are opened in the lifespan, never at import time."""
    holder: dict[str, Services] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            database_url, min_size=1, max_size=pool_size, server_settings={"role": "parvis_app"}
        )
        live = Live(database_url, read_models)
        await live.start()
        executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="parvis-command")
        domain = await _in_thread(executor, domain_factory)
        # Short timeouts: with Redis down, verifyHistory still answers with the chain alone.
        client = (
            redis.asyncio.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=2) if redis_url else None
        )
        holder["services"] = Services(
            domain=domain,
            pool=pool,
            tokens=Tokens(token_key, token_ttl),
            secrets=secrets,
            live=live,
            config=config,
            executor=executor,
            checkpoints=None if client is None else Checkpoints(client, checkpoint_namespace, checkpoint_public_key),
        )
        try:
            yield
        finally:
            await live.stop()
            if client is not None:
                await client.aclose()
            await pool.close()
            executor.shutdown(wait=True)
            domain.close()

    graphql = ParvisGraphQL(lambda: holder["services"], config)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        services = holder.get("services")
        if services is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            async with services.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError) as exc:
            return JSONResponse({"status": "database unavailable", "detail": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready", "position": services.live.position})

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def hook(request: Request) -> Response:
        from api.hooks import receive

        if "services" not in holder or not hook_key:
            return JSONResponse({"error": "not ready"}, status_code=503)
        return await receive(request, holder["services"], hook_key)

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/hooks/channels/{channel_id}", hook, methods=["POST"]),
    ]
    middleware = [
        Middleware(BodyLimit, limit=config.max_body_bytes),
        Middleware(
            CORSMiddleware,
            allow_origins=list(config.allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
        ),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


async def _in_thread(executor: ThreadPoolExecutor, fn: Callable[[], Parvis]) -> Parvis:
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(executor, fn)
