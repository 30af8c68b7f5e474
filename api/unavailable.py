"""The database out of reach (restarting, failing over): a 503 that says to retry, not a 500.

Inside an operation, the same errors are masked as INTERNAL with this message and `retryAfter` (api/schema.py)."""

from __future__ import annotations

import json
import logging

import asyncpg
import psycopg
from eventsourcing import persistence
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("parvis.api")
UNAVAILABLE_MESSAGE = "the database is unavailable; retry shortly"

# What a lost or refused database connection raises: asyncpg (read side), psycopg (author keys), the event
# store library (which wraps psycopg's errors), the socket itself.
UNREACHABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # asyncpg's pool resetting a connection that the server cut mid-operation ("cannot switch to state ...").
    asyncpg.InternalClientError,
    psycopg.OperationalError,
    persistence.OperationalError,
    persistence.InterfaceError,
)


class DatabaseUnavailable:
    """Answer 503 (code INTERNAL, with Retry-After) when a request fails for want of the database before its
    response has started; the pools replace their broken connections and later requests succeed.

    A mutation cut this way may or may not have been recorded: retry it with the same idempotency key."""

    def __init__(self, app: ASGIApp, retry_after: int = 1) -> None:
        self.app = app
        self.retry_after = retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except UNREACHABLE as exc:
            if started:
                raise
            log.warning("database unavailable (%s): answered 503", type(exc).__name__)
            body = {"errors": [{"message": UNAVAILABLE_MESSAGE,
                                "extensions": {"code": "INTERNAL", "retryAfter": self.retry_after}}]}
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"retry-after", str(self.retry_after).encode())]})
            await send({"type": "http.response.body", "body": json.dumps(body).encode()})
