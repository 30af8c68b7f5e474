"""Time limits of the API: a request that takes too long, a WebSocket whose token has expired.

(The server's own time-outs, for clients that send their request too slowly, are in `parvis serve`.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

# The close code of a WebSocket whose token has expired: the one of a bad token on connection_init.
TOKEN_EXPIRED_CLOSE = 4403


class RequestTimeout:
    """Answer 503 (INTERNAL, with Retry-After) when an HTTP request has not started its response in time.

    Only the wait for the response's start is bounded, so a long download that has started is not cut.
    A mutation cut this way may still complete: retry it with the same idempotency key."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(self.seconds) as deadline:
                await self.app(scope, receive, watched)
        except TimeoutError:
            if started or not deadline.expired():
                raise
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")],
                }
            )
            body = {"errors": [{"message": "the request took too long", "extensions": {"code": "INTERNAL"}}]}
            await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def close_at_expiry(websocket: WebSocket, expires_at: float) -> asyncio.Task[None]:
    """Close a WebSocket with 4403 when the token it was opened with expires (the task is cancelled on close)."""

    async def close() -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        if websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError):  # closed meanwhile by the other side
                await websocket.close(code=TOKEN_EXPIRED_CLOSE, reason="token expired")

    return asyncio.get_running_loop().create_task(close())
