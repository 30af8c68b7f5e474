"""`make bench`: the benchmark suite of DESIGN section 4. Each figure is a ratio against a baseline measured in the
same run, on the same machine, at the same time.

    python -m tests.bench [--quick] [--output bench-results.json]
    python -m tests.bench --soak [--minutes 10] [--output soak-results.json]

The full run builds a store of 10,000 tenants (1,000 of them with about 1,000 events each) on a fresh database of
the PostgreSQL named by PARVIS_DATABASE_URL (or the embedded one) and takes about 20 minutes on two cores;
`--quick` uses small sizes (about a minute) and only checks that every measurement runs, not its figures.
`--soak` runs the stack under steady mixed load for `--minutes` instead (tests/bench/soak.py) and exits 1 unless it
saw no error, flat memory and bounded lag.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import psycopg
from rich.console import Console
from rich.table import Table

from tests.support import SECRET, fresh_database, services

console = Console(width=160, stderr=True)
ORDER = ["B1", "B2", "B3", "B4", "B5a", "B5b", "B6", "B7", "B8a", "B8b", "P1"]


@contextmanager
def store() -> Iterator[tuple[str, str]]:
    """(database URL, Redis URL): a fresh, migrated database on the services named by PARVIS_* (or embedded ones)."""
    from tests.bench.data import migrate

    with tempfile.TemporaryDirectory(prefix="parvis-bench-") as data_dir, services(Path(data_dir)) as (
            server_url, redis_url), fresh_database(server_url) as database_url:
        migrate(database_url, redis_url)
        yield database_url, redis_url


def run(quick: bool) -> tuple[list[dict[str, Any]], str]:
    from tests.bench.data import Generator, settings_for
    from tests.bench.measures import FULL, QUICK, Run, stack

    sizes = QUICK if quick else FULL
    with store() as (database_url, redis_url):
        with Generator(settings_for(database_url, redis_url)) as gen, stack(database_url, redis_url) as parvis:
            bench = Run(sizes, parvis, gen, console)
            bench.seed_measured()
            bench.measure("B7", bench.b7_alone)
            bench.seed_dashboards()
            bench.measure("B5a B5b", bench.b5_small)
            bench.measure("B1", bench.b1)
            bench.measure("B2", bench.b2)
            bench.measure("B4", bench.b4)
            bench.seed_crowd()
            if "B7" not in bench.rows:
                bench.measure("B7", bench.b7)
            bench.measure("B3", bench.b3)
            bench.measure("B6 B8b", bench.b6)
            bench.seed_light()
            if "B5a" not in bench.rows:
                bench.measure("B5a B5b", bench.b5)
            bench.measure("B8a", bench.b8a)
            bench.measure("P1", bench.p1)
            rows = [bench.rows[i] for i in ORDER if i in bench.rows]
        return rows, machine(database_url)


def soak(minutes: float) -> tuple[dict[str, Any], str]:
    from tests.bench.soak import soak

    with store() as (database_url, redis_url):
        return soak(database_url, redis_url, minutes, console), machine(database_url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that every measurement runs")
    parser.add_argument("--soak", action="store_true", help="steady mixed load instead: errors, memory and lag")
    parser.add_argument("--minutes", type=float, default=10, help="how long the soak's load runs")
    parser.add_argument("--output", help="where the JSON results go (bench-results.json, soak-results.json)")
    args = parser.parse_args()
    # Stopped from outside: unwind, so that the servers, the peer and the database go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    start, load_before = time.monotonic(), os.getloadavg()[0]
    if args.soak:
        soaked, described = soak(args.minutes)
        rows = soaked["rows"]
    else:
        rows, described = run(args.quick)
    minutes, load_after = (time.monotonic() - start) / 60, os.getloadavg()[0]
    mode = "soak" if args.soak else "quick" if args.quick else "full"
    # The load average says how much else the machine was doing (the ratios are taken in the same run for that).
    described += f"; load average {load_before:.1f} at the start, {load_after:.1f} at the end"
    title = (f"Parvis soak ({args.minutes:g} min of load, {minutes:.1f} min in all) on {described}" if args.soak
             else f"Parvis benchmarks ({mode}, {minutes:.1f} min) on {described}")
    Console(width=160).print(table(rows, title))
    if args.quick:
        Console(width=160).print("Quick mode: the figures only show that each measurement runs; read the full run's.")
    results: dict[str, Any] = {"machine": described, "mode": mode, "minutes": round(minutes, 1), "rows": rows}
    if args.soak:
        verdict = "met" if soaked["ok"] else "NOT met: " + ", ".join(r["id"] for r in rows if not r["met"])
        Console(width=160).print(f"Soak: no error, memory flat, lag bounded: {verdict}")
        results.update(ok=soaked["ok"], plan=soaked["plan"], rates=soaked["rates"], probe_rate=soaked["probe_rate"],
                       figures=soaked["figures"])
    output = args.output or ("soak-results.json" if args.soak else "bench-results.json")
    Path(output).write_text(json.dumps(results, indent=2, default=str))
    return 1 if args.soak and not soaked["ok"] else 0


def table(rows: list[dict[str, Any]], title: str) -> Table:
    out = Table("id", "measurement", "baseline", "value", "ratio", "goal", "met", show_lines=True, title=title)
    for r in rows:
        if "error" in r:
            out.add_row(r["id"], r["what"] or "not measured", "—", r["error"], "—", r["goal"], "NO")
        else:
            out.add_row(r["id"], r["what"], r["baseline"], r["value"], f"{r['ratio']:.2f}", r["goal"],
                        "yes" if r["met"] else "NO")
    return out


def machine(database_url: str) -> str:
    """The machine, as the closing note quotes it."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            pg = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
    except psycopg.Error:
        pg = "?"
    ram = psutil.virtual_memory().total / 1024**3
    return (f"{cpu}, {os.cpu_count()} cores, {ram:.0f} GB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, PostgreSQL {pg}")


if __name__ == "__main__":
    os.environ.setdefault("PARVIS_SECRET_KEY", SECRET)
    sys.exit(main())
