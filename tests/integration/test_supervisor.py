"""`parvis dev`: the three processes under one supervisor, restarted when they die, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port, parvis, process_env, wait_http


def children_of(pid: int) -> dict[int, str]:
    """The direct children of a process, with their command lines."""
    out: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            out[int(child)] = cmdline
    return out


def wait_until(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError("condition not reached")


def test_dev_supervises_api_projector_and_worker_and_stops_them_on_sigterm(settings: Any, tmp_path: Path) -> None:
    # Given `parvis dev` on the test database and Redis
    port = free_port()
    env = process_env(
        settings.database_url, settings.redis_url, PARVIS_PORT=str(port), PARVIS_DATA_DIR=str(tmp_path)
    )
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = parvis("dev", env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        kids = wait_until(lambda: len(children_of(proc.pid)) == 3 and children_of(proc.pid))
        assert sorted(c.split("parvis.cli ")[1].split()[0] for c in kids.values()) == ["project", "serve", "work"]

        # When the worker dies, it is started again
        worker = next(pid for pid, cmd in kids.items() if "parvis.cli work" in cmd)
        os.kill(worker, signal.SIGKILL)
        restarted = wait_until(
            lambda: next((p for p, c in children_of(proc.pid).items() if "parvis.cli work" in c and p != worker), None)
        )
        assert restarted != worker
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200

        # When the supervisor gets SIGTERM, every child stops and it exits cleanly
        pids = list(children_of(proc.pid))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert all(not Path(f"/proc/{p}").exists() or _zombie(p) for p in pids)
        assert f"GraphiQL at http://127.0.0.1:{port}/graphql" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True
