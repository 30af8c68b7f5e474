"""Integration tests for the embedded PostgreSQL and Redis servers."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from parvis.embedded import (
    EmbeddedService,
    ensure_services,
    start_postgres,
    start_redis,
)

logger = logging.getLogger(__name__)


def _pid_alive(pid: int | None) -> bool:
    """Tell whether a (non-zombie) process with this pid exists."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def services() -> Iterator[list[EmbeddedService]]:
    """Collect started services and make sure they are stopped even if a test fails."""
    started: list[EmbeddedService] = []
    yield started
    for service in reversed(started):
        service.stop()


def test_postgres_persists_and_is_reused(tmp_path: Path, services: list[EmbeddedService]) -> None:
    """PostgreSQL data survives a restart and a second start reuses the server."""
    t0 = time.monotonic()
    pg = start_postgres(tmp_path)
    services.append(pg)
    first_start = time.monotonic() - t0
    assert pg.owned
    assert pg.url.startswith("postgresql://parvis@127.0.0.1:")
    assert pg.url.endswith("/parvis")
    state = json.loads((tmp_path / "postgres.json").read_text())
    assert state["url"] == pg.url

    with psycopg.connect(pg.url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("parvis",)
        assert conn.execute("SHOW max_connections").fetchone() == ("200",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'parvis'")
        assert row.fetchone() == (True,)
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes VALUES (1, 'hello')")

    # A second start on the same dir reuses the running server and does not own it.
    again = start_postgres(tmp_path)
    assert not again.owned
    assert again.url == pg.url
    assert again.pid == pg.pid
    again.stop()
    assert _pid_alive(pg.pid)
    with psycopg.connect(again.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    pg.stop()
    assert not _pid_alive(pg.pid)
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()

    t0 = time.monotonic()
    pg2 = start_postgres(tmp_path)
    services.append(pg2)
    restart = time.monotonic() - t0
    assert pg2.owned
    assert pg2.url == pg.url
    with psycopg.connect(pg2.url) as conn:
        assert conn.execute("SELECT body FROM notes WHERE id = 1").fetchone() == ("hello",)
    pg2.stop()
    assert not _pid_alive(pg2.pid)
    logger.info("postgres first start %.2fs, restart %.2fs", first_start, restart)


def test_redis_persists_and_is_reused(tmp_path: Path, services: list[EmbeddedService]) -> None:
    """Redis data survives a restart and a second start reuses the server."""
    t0 = time.monotonic()
    rd = start_redis(tmp_path)
    services.append(rd)
    first_start = time.monotonic() - t0
    assert rd.owned
    assert rd.url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(rd.url)
    assert client.set("greeting", "hello")
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    client.close()

    again = start_redis(tmp_path)
    assert not again.owned
    assert again.url == rd.url
    again.stop()
    assert _pid_alive(rd.pid)

    rd.stop()
    assert not _pid_alive(rd.pid)
    assert (tmp_path / "redis" / "appendonly.aof").exists()

    t0 = time.monotonic()
    rd2 = start_redis(tmp_path)
    services.append(rd2)
    restart = time.monotonic() - t0
    assert rd2.url == rd.url
    with redis.Redis.from_url(rd2.url) as client:
        assert client.get("greeting") == b"hello"
    rd2.stop()
    assert not _pid_alive(rd2.pid)
    logger.info("redis first start %.2fs, restart %.2fs", first_start, restart)


def test_busy_port_falls_back_to_free_port(tmp_path: Path, services: list[EmbeddedService]) -> None:
    """A configured port held by another program is replaced by a free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        rd = start_redis(tmp_path, port=busy)
        services.append(rd)
        assert rd.url != f"redis://127.0.0.1:{busy}/0"
        with redis.Redis.from_url(rd.url) as client:
            assert client.ping()
    rd.stop()


def test_ensure_services(tmp_path: Path, services: list[EmbeddedService]) -> None:
    """Given URLs pass through unchanged; missing ones start embedded servers."""
    given = ("postgresql://u@db:5432/x", "redis://cache:6379/0")
    assert ensure_services(tmp_path, *given) == (*given, [])

    db_url, redis_url, started = ensure_services(tmp_path, None, None)
    services.extend(started)
    assert [s.name for s in started] == ["postgres", "redis"]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("parvis",)
    with redis.Redis.from_url(redis_url) as client:
        assert client.ping()
    for service in started:
        service.stop()
        assert not _pid_alive(service.pid)
    assert os.listdir(tmp_path / "redis")
