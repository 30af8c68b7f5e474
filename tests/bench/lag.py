"""B4: lag from commit to read model at a steady rate of commands, run as its own process.

    python -m tests.bench.lag SPEC.json --rate 200 --seconds 30

SPEC.json names the tenants to act in ({"tenants": [{"key", "channel"}], "author": user id, "reviewer": user id}).
Commands go through the domain application (as the API's thread pool runs them), at the given rate, in a mix of
drafting, submitting, reviewing posts and ingesting a single interaction. For each command the time right after
its commit is taken; a separate listener process timestamps every `parvis_projected` notification (the position
each read model reached). The lag of a command is the time until every read model has reached its position.
Prints one JSON object: commands, achieved rate, lag p50 / p99 / max (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import multiprocessing
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.load import percentile

# Commands in flight at once (as many as the API's thread pool and connection pool allow by default).
THREADS = 10


def listen(dsn: str, names: list[str], ready: Any, stop: Any, out: Any) -> None:
    """Child process: (projection, position, monotonic time) of every notification until told to stop."""
    import asyncpg

    seen: list[tuple[str, int, float]] = []

    def on_projected(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        name, _, position = payload.partition(":")
        if name in names:
            seen.append((name, int(position), time.monotonic()))

    async def main() -> None:
        conn = await asyncpg.connect(dsn)
        await conn.add_listener("parvis_projected", on_projected)
        ready.set()
        await asyncio.to_thread(stop.wait)
        await conn.close()

    asyncio.run(main())
    out.put(seen)


class Commands:
    """The command mix, cycling over the tenants."""

    def __init__(self, app: Any, spec: dict[str, Any]) -> None:
        self.app = app
        self.spec = spec
        self.drafts: list[str] = []
        self.submitted: list[str] = []

    def next(self, i: int) -> Any:
        from domain.context import Actor, acting_as
        from domain.inbox import Incoming
        from domain.post import Variant

        tenant = self.spec["tenants"][i % len(self.spec["tenants"])]
        kind = i % 4
        if kind == 1 and (post := _take(self.drafts)):
            with acting_as(Actor(id=self.spec["author"], role="AGENCY_ADMIN")):
                outcome = self.app.submit_post(post)
            self.submitted.append(post)
            return outcome
        if kind == 2 and (post := _take(self.submitted)):
            with acting_as(Actor(id=self.spec["reviewer"], role="COMMUNITY_MANAGER")):
                return self.app.review_post(post, self.spec["reviewer"], "approve", None, {"internal"})
        if kind == 3:
            item = Incoming(tenant["channel"], "COMMENT", f"lag-{os.getpid()}-{i}", f"@lag{i % 50}",
                            "Merci pour votre action !", datetime.now(UTC))
            with acting_as(Actor(id=self.spec["author"], role="AGENCY_ADMIN")):
                return self.app.ingest_interactions(tenant["key"], [item])
        with acting_as(Actor(id=self.spec["author"], role="AGENCY_ADMIN")):
            outcome = self.app.draft_post(tenant["key"], self.spec["author"],
                                          [Variant(tenant["channel"], f"Post {i} à la cadence")], None, None, None,
                                          "COLD")
        self.drafts.append(outcome.value)
        return outcome


def _take(items: list[str]) -> str | None:
    """The last item, or None (several threads take from the same list)."""
    try:
        return items.pop()
    except IndexError:
        return None


class Listener:
    """The listener child process, listening once entered; `stop()` returns what it heard."""

    def __init__(self, dsn: str, names: list[str]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready, self._stop, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        self._process = ctx.Process(target=listen, args=(dsn, names, self._ready, self._stop, self._out))

    def __enter__(self) -> Listener:
        self._process.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(10)

    def stop(self) -> list[tuple[str, int, float]]:
        """(projection, position, monotonic time) of every notification since the start."""
        self._stop.set()
        seen: list[tuple[str, int, float]] = self._out.get(timeout=30)
        self._process.join(10)
        return seen


def steady(commands: Commands, rate: float, total: int, commits: list[tuple[int, float]],
           threads: int = THREADS) -> tuple[float, int]:
    """Run `total` commands at `rate` per second, `threads` at a time; the position of each and the time right after
    its commit go to `commits`. Returns (seconds taken, commands started late)."""

    def one(i: int) -> None:
        outcome = commands.next(i)
        committed = time.monotonic()
        if outcome.position is not None:
            commits.append((outcome.position, committed))

    late = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        start = time.monotonic()
        futures = []
        for i in range(total):
            due = start + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.05:
                late += 1
            futures.append(pool.submit(one, i))
        for future in futures:
            future.result()
        return time.monotonic() - start, late


def settle(app: Any, names: list[str], commits: list[tuple[int, float]], within: float = 30) -> None:
    """Wait (bounded) until every read model has the last command, then a little more for its notification."""
    top = max((p for p, _ in commits), default=0)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not _reached(app, names, top):
        time.sleep(0.1)
    time.sleep(0.3)


def run(spec: dict[str, Any], rate: float, seconds: float) -> dict[str, Any]:
    from parvis import wiring
    from parvis.settings import Settings

    settings = Settings()
    names = wiring.read_model_names()
    with Listener(settings.database_url or "", names) as listener:
        app = wiring.domain(settings.model_copy(update={"db_pool_size": THREADS}))
        commits: list[tuple[int, float]] = []
        total = int(rate * seconds)
        elapsed, late = steady(Commands(app, spec), rate, total, commits)
        settle(app, names, commits)
        seen = listener.stop()
    app.close()
    lags = [lag for _, lag in timed_lags(commits, seen, names)]
    return {
        "commands": total, "seconds": elapsed, "rate": total / elapsed, "late": late, "measured": len(lags),
        "p50": percentile(lags, 0.5), "p99": percentile(lags, 0.99), "max": max(lags, default=0.0),
    }


def _reached(app: Any, names: list[str], position: int) -> bool:
    with app.recorder.datastore.get_connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT min(position) AS low, count(*) AS n FROM parvis.tracking WHERE projection = ANY(%s)",
                    (names,))
        row = cur.fetchone()
    return bool(row and row["n"] == len(names) and row["low"] >= position)


def timed_lags(commits: list[tuple[int, float]], seen: list[tuple[str, int, float]],
               names: list[str]) -> list[tuple[float, float]]:
    """Per command: (monotonic time of its commit, ms from then until the last read model reported a position at or
    past it). A command that some read model never reported is left out."""
    per: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for name, position, at in seen:  # in arrival order; each read model's positions only grow
        positions, times = per[name]
        positions.append(position)
        times.append(at)
    lags = []
    for position, committed in commits:
        reached = []
        for name in names:
            positions, times = per[name]
            k = bisect.bisect_left(positions, position)
            if k == len(positions):
                break
            reached.append(times[k])
        else:
            lags.append((committed, max(0.0, (max(reached) - committed) * 1000)))
    return lags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    result = run(json.loads(args.spec.read_text()), args.rate, args.seconds)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
