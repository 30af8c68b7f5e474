"""The per-request context and the long-lived services it points to."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import asyncpg
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from api.auth import Principal, Tokens
from api.db import ReadSession, Replica, WritePositions
from api.live import Live
from api.throttle import RateLimitConfig, Throttle
from domain.app import Parvis
from projections.checkpoints import Checkpoints

T = TypeVar("T")


class SecretsPort(Protocol):
    def verify_password(self, sealed_hash: str | None, password: str) -> bool: ...
    def seal(self, plaintext: str) -> str: ...


@dataclass(frozen=True)
class ApiConfig:
    """What the API needs from the settings (built by the composition root)."""

    development: bool = False
    allowed_origins: tuple[str, ...] = ()
    consistency_timeout: float = 2.0
    max_body_bytes: int = 8_388_608
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2_000
    max_page: int = 100
    # 0: no cost limit (api/cost.py has the model).
    max_cost: int = 10_000
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    # A request whose response has not started after this long is answered 503 (0: no limit).
    request_timeout: float = 60.0
    # A WebSocket that sends no connection_init within this long is closed (4408).
    ws_init_timeout: float = 10.0
    # How often an open WebSocket's credentials are checked again (revoked token or key, lost roles: 4403).
    ws_recheck: float = 30.0
    # Tests switch this off to prove that row-level security alone isolates tenants.
    resolver_filters: bool = True


@dataclass
class Services:
    """Long-lived collaborators shared by all requests of one API process."""

    domain: Parvis
    pool: asyncpg.Pool
    tokens: Tokens
    secrets: SecretsPort
    live: Live
    config: ApiConfig
    executor: ThreadPoolExecutor
    # The signed history checkpoints (in Redis); None when the API runs without Redis.
    checkpoints: Checkpoints | None = None
    # The rate limits (in Redis); None when the API runs without Redis.
    throttle: Throttle | None = None
    # The read replica (PARVIS_READ_DATABASE_URL) and each user's last write position; None without them.
    replica: Replica | None = None
    positions: WritePositions | None = None

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a synchronous domain command in the thread pool, with the ambient context."""
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(ctx.run, fn, *args, **kwargs))


@dataclass
class Context:
    """What every resolver sees: the caller, the read session, the loaders, the services."""

    services: Services
    request: Request | WebSocket
    response: Response | None = None
    principal: Principal | None = None
    connection_params: dict[str, Any] | None = None
    loaders: dict[str, Any] = field(default_factory=dict)
    auth_error: str | None = None
    traceparent: str | None = None  # of the operation's span (api/tracing.py), stamped on its events
    # The caller's address and bearer value, for the rate limits (a WebSocket's come with connection_init).
    client_ip: str | None = None
    bearer: str | None = None
    # The position the answer must include at least: this request's own writes (read-your-writes with a replica).
    written: int = 0
    _session: ReadSession | None = None

    @property
    def db(self) -> ReadSession:
        if self._session is None:
            self._session = ReadSession(self.services.pool, self.principal, self.services.replica, self.required)
        return self._session

    def fresh_db(self) -> ReadSession:
        """A new read session (subscriptions open one per event, so no transaction stays open); with a replica, it
        must have reached what the primary's read models have (the change that woke the subscription)."""
        live = self.services.live

        async def reached() -> int | None:
            return max(live.position, await self.required() or 0)

        return ReadSession(self.services.pool, self.principal, self.services.replica, reached)

    async def required(self) -> int | None:
        """What a replica must have reached to answer this caller: the caller's last write (kept in Redis for every
        API process), this request's own writes, and the `Parvis-Min-Position` header; None when unknown."""
        wanted = max(self.written, _header_position(self.request))
        if self.principal is None:
            return wanted
        positions = self.services.positions
        last = await positions.last(self.principal.user_id) if positions is not None else None
        return None if last is None else max(wanted, last)

    async def wrote(self, position: int | None) -> None:
        """A command of this request was stored at `position`: later reads must see it, in this request and after."""
        if position is None:
            return
        self.written = max(self.written, position)
        if self.services.positions is not None and self.principal is not None:
            await self.services.positions.record(self.principal.user_id, position)
        if self._session is not None and self._session.on_replica:
            await self.close_session()  # reopened where the write can be seen

    async def close_session(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def close(self) -> None:
        await self.close_session()
        self.loaders.clear()

    def require_principal(self) -> Principal:
        from api.errors import Unauthenticated

        if self.principal is None:
            raise Unauthenticated(self.auth_error or "sign in first: send 'Authorization: Bearer <token>'")
        return self.principal


POSITION_HEADER = "parvis-min-position"


def _header_position(request: Request | WebSocket) -> int:
    """The `Parvis-Min-Position` header: a position the answer must include (e.g. a mutation's `position` seen by
    another client); absent or malformed counts as 0."""
    value = request.headers.get(POSITION_HEADER, "")
    return int(value) if value.isdigit() and len(value) < 19 else 0
