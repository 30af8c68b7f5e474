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
from api.db import ReadSession
from api.live import Live
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
    _session: ReadSession | None = None

    @property
    def db(self) -> ReadSession:
        if self._session is None:
            self._session = ReadSession(self.services.pool, self.principal)
        return self._session

    def fresh_db(self) -> ReadSession:
        """A new read session (subscriptions open one per event, so no transaction stays open)."""
        return ReadSession(self.services.pool, self.principal)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        self.loaders.clear()

    def require_principal(self) -> Principal:
        from api.errors import Unauthenticated

        if self.principal is None:
            raise Unauthenticated(self.auth_error or "sign in first: send 'Authorization: Bearer <token>'")
        return self.principal
