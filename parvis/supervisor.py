"""`parvis dev` and `parvis demo`: the API, the projector and the workers as one supervised process tree.

Each child is the same command line a production deployment runs (`serve`, `project`, `work`), pointed at the
already-resolved database and Redis, so the embedded servers are started once, by the parent. A child that
dies is started again with a growing delay; SIGTERM or Ctrl-C stops every child cleanly, then the parent.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

import httpx

from parvis.settings import Settings

log = logging.getLogger("parvis.supervisor")

CHILDREN: dict[str, tuple[str, ...]] = {"api": ("serve",), "projector": ("project",), "worker": ("work",)}
_MAX_BACKOFF = 30.0
_STOP_GRACE = 15.0


@dataclass
class Child:
    """One supervised process and its restart bookkeeping."""

    name: str
    args: tuple[str, ...]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "parvis.cli", *self.args], env=env)
        self.started_at = time.monotonic()
        log.info("%s started (pid %s)", self.name, self.proc.pid)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of every child: the parent's, with the resolved services and an absolute data dir."""
    env = dict(os.environ)
    env["PARVIS_DATABASE_URL"] = settings.database_url or ""
    env["PARVIS_REDIS_URL"] = settings.redis_url or ""
    env["PARVIS_ENV"] = settings.env
    env["PARVIS_DATA_DIR"] = str(settings.data_dir.resolve())
    env["PARVIS_HOST"] = settings.host
    env["PARVIS_PORT"] = str(settings.port)
    return env


def supervise(settings: Settings, banner: str | None = None) -> None:
    """Run the three processes until SIGTERM or Ctrl-C; print the address (and `banner`) once the API answers."""
    env = child_env(settings)
    children = [Child(name, args) for name, args in CHILDREN.items()]
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    url = f"http://{settings.host}:{settings.port}"
    announced = False
    try:
        for child in children:
            child.start(env)
        while not stopping.is_set():
            _restart_dead(children, env)
            if not announced and _healthy(f"{url}/healthz"):
                announced = True
                _announce(url, banner)
            stopping.wait(0.5)
    finally:
        _stop_all(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _restart_dead(children: list[Child], env: dict[str, str]) -> None:
    now = time.monotonic()
    for child in children:
        code = child.exited()
        if code is None:
            continue
        if child.next_start == 0.0:
            # A child that ran for a minute had a healthy life: start counting again.
            if now - child.started_at > 60:
                child.restarts = 0
            delay = min(_MAX_BACKOFF, 2.0**child.restarts)
            child.next_start = now + delay
            log.warning("%s exited with code %s; restarting in %.0f s", child.name, code, delay)
        elif now >= child.next_start:
            child.restarts += 1
            child.next_start = 0.0
            child.start(env)


def _stop_all(children: list[Child]) -> None:
    running = [c for c in children if c.proc is not None and c.proc.poll() is None]
    for child in running:
        assert child.proc is not None
        child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE
    for child in running:
        assert child.proc is not None
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", child.name, _STOP_GRACE)
            child.proc.kill()
            child.proc.wait()
    log.info("all processes stopped")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _announce(url: str, banner: str | None) -> None:
    lines = ["", f"Parvis is running: GraphiQL at {url}/graphql", "Stop with Ctrl-C; the data stays where it is."]
    if banner:
        lines += ["", banner]
    print("\n".join(lines), flush=True)
