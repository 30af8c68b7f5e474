"""The Starlette application: /graphql (HTTP and graphql-transport-ws), health, readiness, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
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
from starlette.websockets import WebSocket, WebSocketState
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET

from api.auth import Tokens, principal_from_token
from api.context import POSITION_HEADER, ApiConfig, Context, SecretsPort, Services
from api.db import Replica, WritePositions
from api.errors import ApiError
from api.live import Live
from api.schema import build_schema
from api.throttle import Refused, Throttle
from api.timeouts import TOKEN_EXPIRED_CLOSE, RequestTimeout, close_at_expiry
from api.unavailable import DatabaseUnavailable
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
            connection_init_wait_timeout=timedelta(seconds=config.ws_init_timeout),
        )
        self._services = services_ref

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The rate limits come first: a refused request is neither parsed nor authenticated."""
        throttle = self._services().throttle
        if throttle is not None and scope["type"] in ("http", "websocket"):
            ip = scope["client"][0] if scope.get("client") else None
            bearer = _bearer(dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1"))
            try:
                # A WebSocket's token comes later, with connection_init: its operations are counted then.
                await throttle.request(ip, bearer if scope["type"] == "http" else None)
            except Refused as refused:
                await _refuse(scope, receive, send, refused)
                return
        await super().__call__(scope, receive, send)

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        try:
            response = await super().run(request, context, root_value)
        finally:
            if isinstance(request, WebSocket):
                for task in getattr(request.state, "watchers", ()):
                    task.cancel()
                if (context := getattr(request.state, "context", None)) is not None:
                    await context.close()  # whatever the connection's operations left open
        outcome = getattr(request.state, "graphql_result", None) if isinstance(request, Request) else None
        if outcome is not None and isinstance(response, Response) and _wants_graphql_response(request):
            # GraphQL over HTTP: application/graphql-response+json, with 400 for a request that could not run.
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
            if outcome == "request error":
                response.status_code = 400
        return response

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket | None = None) -> Context:
        ctx = Context(
            services=self._services(), request=request, response=response if isinstance(response, Response) else None
        )
        if isinstance(request, WebSocket):
            request.state.context = ctx
        if isinstance(request, Request):
            ctx.client_ip = request.client.host if request.client else None
            header = request.headers.get("authorization")
            ctx.bearer = _bearer(header)
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
        context.bearer = _bearer(value)
        websocket = context.request
        if isinstance(websocket, WebSocket):
            watchers = [asyncio.get_running_loop().create_task(self._watch_credentials(context, websocket, value))]
            if context.principal.expires_at is not None:
                watchers.append(close_at_expiry(websocket, context.principal.expires_at))
            websocket.state.watchers = watchers
        return None

    async def _watch_credentials(self, context: Context, websocket: WebSocket, value: str) -> None:
        """Check an open socket's credentials again every `ws_recheck` seconds, as each HTTP request is checked:
        a revoked token or API key, or a lost role, closes it with 4403 (its subscriptions were allowed under
        them). A database that cannot answer for a moment closes nothing."""
        granted = set(context.principal.grants) if context.principal else set()
        while True:
            await asyncio.sleep(context.services.config.ws_recheck)
            try:
                principal = await _authenticate(context, value)
            except ApiError as exc:
                reason = "credentials revoked" if exc.code == "UNAUTHENTICATED" else exc.message
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                continue
            else:
                if granted <= set(principal.grants):
                    context.principal = principal
                    continue
                reason = "roles changed"
            if websocket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError):  # closed meanwhile by the other side
                    await websocket.close(code=TOKEN_EXPIRED_CLOSE, reason=reason)
            return

    async def process_result(self, request: Request, result: Any) -> Any:
        """Every error carries a code: the document or its variables are bad input, or the limits refused it."""
        response = await super().process_result(request, result)
        for error in response.get("errors") or []:
            extensions = error.setdefault("extensions", {})
            extensions.setdefault("code", _code_of(str(error.get("message", ""))))
        # A request error (the document does not parse or validate, the variables do not coerce, a limit refused
        # it) has no data and no error with a path: it never ran.
        failed = result.data is None and bool(result.errors) and all(e.path is None for e in result.errors)
        request.state.graphql_result = "request error" if failed else "executed"
        if failed and _wants_graphql_response(request):
            response.pop("data", None)
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


GRAPHQL_RESPONSE = "application/graphql-response+json"


def _wants_graphql_response(request: Request) -> bool:
    """Whether the client prefers application/graphql-response+json to application/json (Accept order)."""
    for part in request.headers.get("accept", "").split(","):
        media = part.split(";")[0].strip().lower()
        if media == GRAPHQL_RESPONSE:
            return True
        if media in ("application/json", "application/*", "*/*"):
            return False
    return False


def _bearer(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


async def _refuse(scope: Scope, receive: Receive, send: Send, refused: Refused) -> None:
    """429 with Retry-After and a GraphQL error RATE_LIMITED; a WebSocket handshake gets the same answer."""
    error = refused.error()
    body = {"errors": [{"message": error.message, "extensions": error.extensions}]}
    response = JSONResponse(body, status_code=429, headers={"retry-after": str(refused.retry_after)})
    if scope["type"] == "http":
        await response(scope, receive, send)
        return
    websocket = WebSocket(scope, receive, send)
    if "websocket.http.response" in scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1008, reason="rate limited")


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
    read_database_url: str | None = None,
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
        # Queries may go to a read replica; each user's last write position (in Redis) keeps read-your-writes.
        replica = None
        if read_database_url:
            replica_pool = await asyncpg.create_pool(
                read_database_url, min_size=0, max_size=pool_size, server_settings={"role": "parvis_app"}
            )
            replica = Replica(replica_pool, read_models)
        holder["services"] = Services(
            domain=domain,
            pool=pool,
            tokens=Tokens(token_key, token_ttl),
            secrets=secrets,
            live=live,
            config=config,
            executor=executor,
            checkpoints=None if client is None else Checkpoints(client, checkpoint_namespace, checkpoint_public_key),
            throttle=Throttle(redis_url, config.rate_limits, checkpoint_namespace) if redis_url else None,
            replica=replica,
            positions=WritePositions(client, checkpoint_namespace) if replica and client else None,
        )
        try:
            yield
        finally:
            await live.stop()
            if client is not None:
                await client.aclose()
            await pool.close()
            if replica is not None:
                await replica.pool.close()
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

    async def report_file(request: Request) -> Response:
        from api.reports.download import download

        if "services" not in holder:
            return JSONResponse({"error": "not ready"}, status_code=503)
        return await download(await graphql.get_context(request), request)

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/hooks/channels/{channel_id}", hook, methods=["POST"]),
        Route("/reports/{report_id}/{format}", report_file, methods=["GET"]),
    ]
    middleware = [
        Middleware(RequestTimeout, seconds=config.request_timeout),
        Middleware(DatabaseUnavailable),
        Middleware(BodyLimit, limit=config.max_body_bytes),
        Middleware(
            CORSMiddleware,
            allow_origins=list(config.allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", POSITION_HEADER],
        ),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


async def _in_thread(executor: ThreadPoolExecutor, fn: Callable[[], Parvis]) -> Parvis:
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(executor, fn)
