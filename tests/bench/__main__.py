"""`make bench`: the benchmark suite. Each figure is a ratio against a baseline measured in the same run.

    python -m tests.bench [--quick] [--output bench-results.json]

Measurements so far: B7 (one tenant as of a date, in a store of many tenants, against the same tenant alone).
The other rows of DESIGN section 4 come with the benchmark issue; the table lists only what was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tests.support import PASSWORD, SECRET, Client, fresh_database, running, services

console = Console(width=150)


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    """p50 and p99 (ms) of `runs` calls, after two warm-up calls."""
    for _ in range(2):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {"p50": median(samples), "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))]}


def b7(database_url: str, redis_url: str, quick: bool) -> dict[str, Any]:
    """B7: `asOf` of one tenant in a store of many tenants, against the same tenant alone (same run, same server)."""
    from tests.bench.data import caught_up, populate, settings_for

    others = 40 if quick else 1000
    settings = settings_for(database_url, redis_url)
    with running(database_url, redis_url) as url:
        measured = populate(settings, tenants=1, posts=12, interactions=120, prefix="measured")[0]
        admin = Client(url).login(measured.admin_email, PASSWORD)
        caught_up(database_url)
        query = "query($id: ID!, $at: DateTime!) { tenant(id: $id) { asOf(at: $at) { eventCount posts { status } " \
                "interactions { status } } } }"
        at = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        variables = {"id": measured.tenant_id, "at": at}
        events = admin.data(query, variables)["tenant"]["asOf"]["eventCount"]
        runs = 15 if quick else 60
        alone = timed(lambda: admin.data(query, variables), runs)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"B7: {others} other tenants", total=others)
            populate(settings, tenants=others, posts=5, interactions=20, prefix="other",
                     progress=lambda n: progress.update(task, completed=n))
        caught_up(database_url)
        crowded = timed(lambda: admin.data(query, variables), runs)
    ratio = crowded["p50"] / alone["p50"]
    return {
        "id": "B7", "what": f"asOf of one tenant ({events} events): {others} other tenants vs alone",
        "baseline": f"{alone['p50']:.1f} ms (p99 {alone['p99']:.1f})",
        "value": f"{crowded['p50']:.1f} ms (p99 {crowded['p99']:.1f})",
        "ratio": round(ratio, 2), "goal": "≤ 1.3", "met": ratio <= 1.3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that every measurement runs")
    parser.add_argument("--output", default="bench-results.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parvis-bench-") as data_dir, services(Path(data_dir)) as (
        server_url, redis_url), fresh_database(server_url) as database_url:
        from tests.bench.data import migrate

        migrate(database_url, redis_url)
        rows = [b7(database_url, redis_url, args.quick)]
    table = Table("id", "measurement", "baseline", "value", "ratio", "goal", "met",
                  title=f"Parvis benchmarks ({'quick' if args.quick else 'full'}) on {machine()}")
    for row in rows:
        table.add_row(row["id"], row["what"], row["baseline"], row["value"], str(row["ratio"]), row["goal"],
                      "yes" if row["met"] else "NO")
    console.print(table)
    Path(args.output).write_text(json.dumps({"machine": machine(), "quick": args.quick, "rows": rows}, indent=2))
    return 0


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


if __name__ == "__main__":
    os.environ.setdefault("PARVIS_SECRET_KEY", SECRET)
    sys.exit(main())
