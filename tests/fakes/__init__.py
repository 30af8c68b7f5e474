"""Local fakes of the platforms' APIs: real HTTP servers on 127.0.0.1, state in memory, faults on demand."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp


@dataclass(frozen=True)
class Fault:
    """What to do to one request: wait `hang` seconds, then answer `status` (None: answer normally)."""

    status: int | None
    endpoint: str | None = None
    error: str | None = None
    reset_in: float = 30.0
    hang: float = 0.0


class Faults:
    """Failures queued for the next requests; thread-safe, since tests queue them while the server runs."""

    def __init__(self) -> None:
        self._queue: list[Fault] = []
        self._lock = threading.Lock()

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        endpoint: str | None = None,
        error: str | None = None,
        reset_in: float = 30,
    ) -> None:
        """The next `times` requests (to `endpoint`, or any) fail with `status`; a 429 says to retry in `reset_in` s."""
        with self._lock:
            self._queue.extend([Fault(status, endpoint, error, reset_in)] * times)

    def hang_next(self, seconds: float, *, endpoint: str | None = None) -> None:
        """The next request (to `endpoint`, or any) is served normally but answered `seconds` late."""
        with self._lock:
            self._queue.append(Fault(None, endpoint, hang=seconds))

    def take(self, endpoint: str) -> Fault | None:
        """The first queued fault for this endpoint, removed from the queue."""
        with self._lock:
            for i, fault in enumerate(self._queue):
                if fault.endpoint in (None, endpoint):
                    return self._queue.pop(i)
        return None


async def answered(request: Request, fault: Fault | None, response: Response) -> Response:
    """The response, sent late if the fault says to hang (the request has been served all the same)."""
    if fault is not None and fault.hang:
        # A client that gave up ends the wait: nobody is left to answer, and shutdown then never cuts a handler.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(fault.hang):
                while (await request.receive())["type"] != "http.disconnect":
                    continue
    return response


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a background thread on a free 127.0.0.1 port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", ws="none", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"fake-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        server.force_exit = True  # a client still waiting on a hanging request is not waited for
        thread.join(timeout=5)
        sock.close()
