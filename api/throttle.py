"""Rate limits in Redis (the `limits` library, sliding-window counters): per address, per token, per login."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError
from limits import RateLimitItem, parse, storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from strawberry.extensions import SchemaExtension

from api.errors import RateLimited, Unauthenticated

log = logging.getLogger("parvis.api.throttle")

# With Redis unreachable the limits are skipped (fail open) for this long, so that every request does not wait
# for a connection that will fail: Redis is an operational dependency, not a gate on the API.
_SKIP_SECONDS = 5.0


@dataclass(frozen=True)
class RateLimitConfig:
    """Each value in the `limits` notation ("600/minute", "10 per 5 minutes"); empty: no limit."""

    per_ip: str = "1200/minute"
    per_bearer: str = "600/minute"  # per access token or API key
    login: str = "10 per 5 minutes"  # failed logins per e-mail and address


class Refused(Exception):
    """Over a limit; `retry_after` is in whole seconds."""

    def __init__(self, what: str, retry_after: int) -> None:
        super().__init__(f"too many {what}: retry in {retry_after} s")
        self.retry_after = retry_after

    def error(self) -> RateLimited:
        error = RateLimited(str(self))
        extensions: dict[str, Any] = error.extensions  # the codes are str; this one is an int
        extensions["retryAfter"] = self.retry_after
        return error


class Throttle:
    """The rate limits of one API process, counted in Redis so that every replica shares them."""

    def __init__(self, redis_url: str, config: RateLimitConfig, namespace: str = "parvis") -> None:
        url = redis_url.replace("redis://", "async+redis://", 1).replace("rediss://", "async+rediss://", 1)
        self._storage = storage.storage_from_string(
            url,
            implementation="redispy",
            key_prefix=f"{namespace}:ratelimit",
            wrap_exceptions=True,
            socket_connect_timeout=1,
            socket_timeout=1,
        )
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._per_ip = _item(config.per_ip)
        self._per_bearer = _item(config.per_bearer)
        self._login = _item(config.login)
        self._skip_until = 0.0

    async def request(self, ip: str | None, bearer: str | None) -> None:
        """Count one request of an address and of the token it carries; raise Refused when over a limit."""
        if ip:
            await self._hit(self._per_ip, "requests from this address", "ip", ip)
        if bearer:
            await self._hit(self._per_bearer, "requests with this token", "token", token_key(bearer))

    async def operation(self, bearer: str | None) -> None:
        """Count one operation sent over a WebSocket against its connection's token."""
        if bearer:
            await self._hit(self._per_bearer, "requests with this token", "token", token_key(bearer))

    @contextlib.asynccontextmanager
    async def login_attempt(self, email: str, ip: str | None) -> AsyncIterator[None]:
        """Refuse a login while the (e-mail, address) pair is over its failures; count a failure when it fails.

        Unknown e-mails count like known ones, so the throttle does not reveal which addresses exist."""
        key = hashlib.sha256(f"{email.strip().lower()}|{ip or ''}".encode()).hexdigest()[:32]
        if self._login is not None and not await self._test(self._login, "login", key):
            retry_after = await self._retry_after(self._login, "login", key)
            raise Refused("failed logins for this e-mail from this address", retry_after)
        try:
            yield
        except Unauthenticated:
            if self._login is not None:
                await self._count(self._login, "login", key)
            raise

    async def _hit(self, item: RateLimitItem | None, what: str, *identifiers: str) -> None:
        if item is None or self._skipping():
            return
        try:
            allowed = await self._limiter.hit(item, *identifiers)
        except StorageError as exc:
            self._fail_open(exc)
            return
        if not allowed:
            raise Refused(what, await self._retry_after(item, *identifiers))

    async def _test(self, item: RateLimitItem, *identifiers: str) -> bool:
        if self._skipping():
            return True
        try:
            return await self._limiter.test(item, *identifiers)
        except StorageError as exc:
            self._fail_open(exc)
            return True

    async def _count(self, item: RateLimitItem, *identifiers: str) -> None:
        if self._skipping():
            return
        try:
            await self._limiter.hit(item, *identifiers)
        except StorageError as exc:
            self._fail_open(exc)

    async def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        try:
            stats = await self._limiter.get_window_stats(item, *identifiers)
        except StorageError:
            return int(item.get_expiry())
        return max(1, math.ceil(stats.reset_time - time.time()))

    def _skipping(self) -> bool:
        return time.monotonic() < self._skip_until

    def _fail_open(self, exc: StorageError) -> None:
        log.warning("rate limits skipped for %.0f s: Redis unavailable (%s)", _SKIP_SECONDS, exc)
        self._skip_until = time.monotonic() + _SKIP_SECONDS


def _item(value: str) -> RateLimitItem | None:
    return parse(value) if value.strip() else None


def token_key(bearer: str) -> str:
    """What identifies a token in Redis: a digest, never the token."""
    return hashlib.sha256(bearer.encode()).hexdigest()[:32]


class WebSocketThrottle(SchemaExtension):
    """Counts each operation sent over a WebSocket against its connection's token (HTTP requests are counted
    by the view before they are parsed)."""

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context.context
        request = getattr(ctx, "request", None)
        throttle = getattr(getattr(ctx, "services", None), "throttle", None)
        if throttle is not None and request is not None and request.scope.get("type") == "websocket":
            try:
                await throttle.operation(ctx.bearer)
            except Refused as refused:
                raise GraphQLError(str(refused), extensions=refused.error().extensions) from None
        yield


@contextlib.asynccontextmanager
async def login_throttle(ctx: Any, email: str) -> AsyncIterator[None]:
    """Around a login: RATE_LIMITED while the e-mail and address are over their failures, failures counted."""
    throttle: Throttle | None = ctx.services.throttle
    if throttle is None:
        yield
        return
    try:
        async with throttle.login_attempt(email, ctx.client_ip):
            yield
    except Refused as refused:
        if ctx.response is not None:
            ctx.response.headers["retry-after"] = str(refused.retry_after)
        raise refused.error() from None
