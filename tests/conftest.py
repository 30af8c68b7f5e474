"""Shared fixtures: real PostgreSQL and Redis (from PARVIS_* or embedded), a fresh database, a server."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support import SECRET, Client, fresh_database, parvis, process_env, running, services


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    """(PostgreSQL server URL, Redis URL): the running services, or embedded ones when unset.

    Embedded ones keep their data outside pytest's temporary root: each pytest start makes that root private
    again, which would cut the embedded PostgreSQL (run as its own system user) off its data if another test
    session started meanwhile."""
    with tempfile.TemporaryDirectory(prefix="parvis-test-services-") as data, services(Path(data)) as found:
        yield found


@pytest.fixture(scope="session")
def redis_url(servers: tuple[str, str]) -> str:
    return servers[1]


def make_settings(database_url: str, redis_url: str, data_dir: Path) -> Any:
    from parvis.settings import Settings

    return Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        secret_key=SECRET,
        data_dir=data_dir,
        db_pool_size=4,
    )


async def migrated(settings: Any) -> None:
    from parvis.cli import _migrate

    await _migrate(settings)


@pytest.fixture(scope="session")
def database_url(servers: tuple[str, str]) -> Iterator[str]:
    """A fresh, migrated database for this test session."""
    with fresh_database(servers[0]) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = make_settings(database_url, redis_url, Path(tmp_path_factory.mktemp("data")))
    asyncio.run(migrated(s))
    return s


@pytest.fixture(scope="session")
def domain(settings: Any) -> Iterator[Any]:
    from parvis import wiring

    app = wiring.domain(settings)
    yield app
    app.close()


@pytest.fixture(scope="session")
async def projector(settings: Any) -> AsyncIterator[Any]:
    """The projection runner, in-process, for integration tests."""
    from parvis import wiring
    from projections.runner import Runner

    runner = Runner(settings.database_url, wiring.projections(settings), poll_seconds=0.2)
    task = asyncio.create_task(runner.run())
    yield runner
    runner.stop()
    await task


@pytest.fixture
async def conn(settings: Any) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(settings.database_url)
    yield c
    await c.close()


@pytest.fixture(scope="session")
def server(settings: Any, redis_url: str) -> Iterator[str]:
    """A running Parvis (API and projector as separate processes); yields the GraphQL URL."""
    with running(settings.database_url, redis_url) as url:
        yield url


@pytest.fixture(scope="module")
def worker(settings: Any, redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """`parvis work` for the session's database, on its own queue namespace; jobs redelivered after 3 s.

    Module-scoped: other modules start workers of their own (e.g. with Redis stopped) on the same job outbox."""
    import uuid

    env = process_env(
        settings.database_url,
        redis_url,
        PARVIS_QUEUE_NAMESPACE=f"parvis-e2e-{uuid.uuid4().hex[:8]}",
        PARVIS_JOB_REDELIVER_SECONDS="3",
        PARVIS_WORKER_THREADS="2",
        PARVIS_POLL_SECONDS="3",
        PARVIS_METRICS_SECONDS="3",
    )
    proc = parvis("work", env=env)
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def agency(settings: Any, domain: Any) -> dict[str, Any]:
    """An agency with its admin, registered through the domain."""
    from tests.support import PASSWORD

    outcome = domain.register_agency("Agence Test", "admin@agence.test", PASSWORD)
    agency_key, user_id = outcome.value
    return {"key": agency_key, "admin": user_id, "email": "admin@agence.test"}


@pytest.fixture(scope="session")
def admin(server: str, agency: dict[str, Any]) -> Client:
    return Client(server).login(agency["email"])
