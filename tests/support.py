"""Test support: databases, a running server, a GraphQL client."""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-key-for-parvis-tests-only-0123456789"
PASSWORD = "correct horse battery"


def with_database(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path=f"/{name}"))


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the given server, dropped afterwards."""
    name = f"parvis_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARVIS_")}
    env.update(
        PARVIS_DATABASE_URL=database_url,
        PARVIS_REDIS_URL=redis_url,
        PARVIS_SECRET_KEY=SECRET,
        PARVIS_ENV="test",
        PARVIS_LOG_LEVEL="WARNING",
        # The suite and the benchmarks call from one address at full speed, and retry logins while a new user is
        # being projected: generous rate limits here; tests/e2e/test_abuse_limits.py sets tight ones.
        PARVIS_RATE_LIMIT_PER_IP="100000/minute",
        PARVIS_RATE_LIMIT_PER_TOKEN="100000/minute",
        PARVIS_LOGIN_RATE_LIMIT="1000/minute",
        PARVIS_WS_RECHECK_SECONDS="1",  # revocations reach open WebSockets within a second
        # The suite's servers serve a few clients at a time: small pools keep the whole suite (several stacks at
        # once) well inside PostgreSQL's 100 connections. The benchmarks set their own.
        PARVIS_DB_POOL_SIZE="5",
    )
    env.update(extra)
    return env


def eventually(check: Callable[[], Any], within: float = 45, every: float = 0.2) -> Any:
    """Poll `check` until it returns a truthy value, which is returned; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last value {value!r})")
        time.sleep(every)


def stop(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """Stop processes as an orchestrator would: SIGTERM to those still running, then SIGKILL to any still there
    after `timeout`; each is reaped."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def parvis(*args: str, env: dict[str, str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a `parvis` command as a child process."""
    return subprocess.Popen([sys.executable, "-m", "parvis.cli", *args], env=env, cwd=ROOT, **kwargs)


def parvis_run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parvis.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


@contextmanager
def services(data_dir: Path) -> Iterator[tuple[str, str]]:
    """(PostgreSQL server URL, Redis URL): the running services named by PARVIS_*, or embedded ones in data_dir."""
    from parvis.embedded import ensure_services

    db, redis, started = ensure_services(
        data_dir, os.environ.get("PARVIS_DATABASE_URL"), os.environ.get("PARVIS_REDIS_URL")
    )
    try:
        yield db, redis
    finally:
        for service in reversed(started):
            service.stop()


@contextmanager
def running(database_url: str, redis_url: str, **extra: str) -> Iterator[str]:
    """A running Parvis (API and projector as separate processes); yields the GraphQL URL.

    `extra` are more PARVIS_ variables (e.g. tighter limits for the tests of those limits)."""
    port = free_port()
    env = process_env(database_url, redis_url, **extra)
    procs = [parvis("project", env=env), parvis("serve", "--port", str(port), env=env)]
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        stop(procs, timeout=15)


@dataclass
class Processes:
    """`parvis` processes of one deployment, logging to files (shown when a test fails)."""

    env: dict[str, str]
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str) -> None:
        with (self.logs / f"{len(self.procs):02d}-{args[0]}.log").open("wb") as out:
            self.procs.append(parvis(*args, env=self.env, stdout=out, stderr=subprocess.STDOUT))

    def api(self) -> Client:
        port = free_port()
        self.start("serve", "--port", str(port))
        wait_http(f"http://127.0.0.1:{port}/healthz")
        return Client(f"http://127.0.0.1:{port}/graphql")

    def alive(self) -> list[int | None]:
        return [p.poll() for p in self.procs]

    def stop(self) -> None:
        stop(self.procs)



def register_agency(
    database_url: str, redis_url: str, data_dir: Path, email: str, password: str = PASSWORD,
    secret_key: str | None = None,
) -> None:
    """Migrate a database of a test's own and register an agency with its admin (`email`, `password`) in it."""
    from pydantic import SecretStr

    from parvis import wiring
    from tests.conftest import make_settings, migrated

    settings = make_settings(database_url, redis_url, data_dir)
    if secret_key is not None:
        settings = settings.model_copy(update={"secret_key": SecretStr(secret_key)})
    asyncio.run(migrated(settings))
    domain = wiring.domain(settings)
    try:
        domain.register_agency("Agence d'essai", email, password)
    finally:
        domain.close()



_HTTP = httpx.Client(timeout=30)
atexit.register(_HTTP.close)


class GraphQLError(AssertionError):
    pass


@dataclass
class Client:
    """A GraphQL-over-HTTP client, as an agency front end would use."""

    url: str
    token: str | None = None
    http: httpx.Client = field(default_factory=lambda: _HTTP)

    def raw(self, query: str, variables: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
        h = {"content-type": "application/json", **headers}
        if self.token:
            h["authorization"] = f"Bearer {self.token}"
        return self.http.post(self.url, json={"query": query, "variables": variables or {}}, headers=h)

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole response body (data and errors)."""
        response = self.raw(query, variables)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The data of a response that must have no errors."""
        body = self.execute(query, variables)
        if body.get("errors"):
            raise GraphQLError(body["errors"])
        return body["data"]  # type: ignore[no-any-return]

    def error_codes(self, query: str, variables: dict[str, Any] | None = None) -> list[str]:
        body = self.execute(query, variables)
        return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]

    def login(self, email: str, password: str = PASSWORD, wait: float = 10) -> Client:
        """Sign in; waits (bounded) for a just-registered user to reach the read model."""
        deadline = time.monotonic() + wait
        while True:
            body = self.execute(
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
                {"e": email, "p": password},
            )
            if not body.get("errors"):
                return Client(self.url, body["data"]["login"]["accessToken"])
            if time.monotonic() > deadline:
                raise GraphQLError(body["errors"])
            time.sleep(0.1)
