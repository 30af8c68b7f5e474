"""A local TCP load balancer for the tests: round robin over the backends whose health check answers 200.

Why a module of our own: we found no maintained PyPI package that gives a round-robin proxy with active health
checks to run beside a test (the closest, pyhaproxy-lb, is a 0.1 "MVP"), and HAProxy and nginx are not installed in
CI. It does what a test of several API processes needs, the way HAProxy's `mode tcp` with `option httpchk` does:

- every `every` seconds, `GET <health>` on each backend (two seconds at most): a 200 marks it healthy; three
  failures in a row (refused, timed out, another status) mark it unhealthy, so that a slow moment of a loaded
  machine does not take a live backend out (HAProxy's `fall 3`);
- each new client connection goes to the next healthy backend in turn; a backend that refuses the connection is
  marked unhealthy at once (it is down) and the next one is tried; with none left, the client gets a 503 with
  `Retry-After: 1`;
- bytes are copied both ways until either side closes, which closes the other: a backend that dies cuts the
  connections it had, as a real TCP balancer does (the client sees a transport error and may retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class Backend:
    """One backend, its health as last seen, and the client connections sent to it."""

    host: str
    port: int
    healthy: bool = False
    failed_checks: int = 0  # in a row
    connections: int = 0  # sent to it since the start
    open: int = 0  # open now


class Balancer:
    """Runs in a thread of its own (its own event loop) while used as a context manager; listens on `port`."""

    def __init__(self, backends: Sequence[tuple[str, int]], *, health: str = "/readyz", every: float = 0.5) -> None:
        self.backends = [Backend(host, port) for host, port in backends]
        self.health = health
        self.every = every
        self.port = 0
        self.unavailable = 0  # connections answered 503 because no backend was healthy
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="balancer", daemon=True)
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._checks: asyncio.Task[None] | None = None

    def __enter__(self) -> Balancer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        await self._check_all()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._checks = asyncio.get_running_loop().create_task(self._check_forever())

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._clients:
            writer.close()  # the copies end, and their connections with them
        if self._checks is not None:
            self._checks.cancel()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self._check_all()

    async def _check_all(self) -> None:
        await asyncio.gather(*(self._check(b) for b in self.backends))

    async def _check(self, backend: Backend) -> None:
        request = f"GET {self.health} HTTP/1.1\r\nHost: {backend.host}:{backend.port}\r\nConnection: close\r\n\r\n"
        status_line = b""
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(2):
                reader, writer = await asyncio.open_connection(backend.host, backend.port)
                try:
                    writer.write(request.encode())
                    await writer.drain()
                    status_line = await reader.readline()
                finally:
                    writer.close()
        if status_line.split()[1:2] == [b"200"]:
            backend.healthy, backend.failed_checks = True, 0
        else:
            backend.failed_checks += 1
            backend.healthy = backend.healthy and backend.failed_checks < 3

    async def _connect(self) -> tuple[Backend, asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the next healthy backend in turn, or None when none takes it."""
        first = next(self._turn)
        for k in range(len(self.backends)):
            backend = self.backends[(first + k) % len(self.backends)]
            if not backend.healthy:
                continue
            try:
                async with asyncio.timeout(1):
                    reader, writer = await asyncio.open_connection(backend.host, backend.port)
            except (OSError, TimeoutError):
                backend.healthy = False  # dead since the last check: do not wait for the next one to say so
                continue
            return backend, reader, writer
        return None

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            self.unavailable += 1
            # Read the request first: closing a socket with unread data would reset it before the answer is read.
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(2):
                    await client_reader.read(65536)
            with contextlib.suppress(OSError):
                client_writer.write(UNAVAILABLE)
                await client_writer.drain()
            client_writer.close()
            return
        backend, reader, writer = upstream
        backend.connections += 1
        backend.open += 1
        self._clients.add(client_writer)
        try:
            await asyncio.gather(_copy(client_reader, writer), _copy(reader, client_writer))
        finally:
            backend.open -= 1
            self._clients.discard(client_writer)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the reading side closes (or fails), then close the writing side."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass  # reset by a peer that died: closing the other side below tells its peer
    finally:
        writer.close()
