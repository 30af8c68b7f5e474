"""How `parvis serve` runs uvicorn: its time-outs and connection cap, and a deadline for receiving a request.

uvicorn bounds the idle time between requests (keep-alive) but not the time a client takes to send a request:
a client that opens a connection and sends nothing, or trickles its headers or body a byte at a time, holds
its connection for ever (slowloris), and ASGI middleware only runs once the headers are in. The protocol below
closes such a connection when its headers (or then its body) are not in by their deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("parvis.serve")


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for a request's headers and then for its body."""

    header_timeout = 10.0
    body_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)  # a connection that sends nothing at all

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # WebSockets have their own limits (connection_init wait, token expiry, pings)
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        if seconds > 0:
            self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
            return  # the app is answering (a pipelined request waits for it): not the client's delay
        if not self.transport.is_closing():
            log.info("closed a connection that did not send its request in time (%s)", self.client)
            self.transport.close()


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    log_level: str,
    header_timeout: float,
    body_timeout: float,
    keep_alive: int,
    max_connections: int,
) -> None:
    """Run the API until SIGTERM or Ctrl-C."""
    protocol = type(
        "DeadlineProtocol", (DeadlineProtocol,), {"header_timeout": header_timeout, "body_timeout": body_timeout}
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol,
        ws="websockets-sansio",
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=keep_alive,
        limit_concurrency=max_connections or None,
    )
