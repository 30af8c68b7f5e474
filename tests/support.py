"""Test support: databases, a running server, a GraphQL client."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
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
    )
    env.update(extra)
    return env


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
def running(database_url: str, redis_url: str) -> Iterator[str]:
    """A running Parvis (API and projector as separate processes); yields the GraphQL URL."""
    port = free_port()
    env = process_env(database_url, redis_url)
    procs = [parvis("project", env=env), parvis("serve", "--port", str(port), env=env)]
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


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
