"""`make bench BENCH_ARGS=--quick` measures every row of DESIGN section 4 (the figures are the full run's to judge)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

ROWS = ["B1", "B2", "B3", "B4", "B5a", "B5b", "B6", "B7", "B8a", "B8b", "P1"]


@pytest.mark.slow
def test_the_quick_benchmark_measures_every_row(servers: tuple[str, str], tmp_path: Path) -> None:
    # Given the services of the test session
    output = tmp_path / "bench-results.json"
    env = {**os.environ, "PARVIS_DATABASE_URL": servers[0], "PARVIS_REDIS_URL": servers[1]}

    # When the quick benchmark runs, as CI runs it
    done = subprocess.run([sys.executable, "-m", "tests.bench", "--quick", "--output", str(output)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=280, check=False)

    # Then it prints the table and every row of the JSON carries a measured ratio, none a failure
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Parvis benchmarks (quick" in done.stdout
    results = json.loads(output.read_text())
    rows = results["rows"]
    assert [r["id"] for r in rows] == ROWS
    unmeasured = {r["id"]: r.get("error") for r in rows if "error" in r or not isinstance(r["ratio"], (int, float))}
    assert unmeasured == {}
    assert all(r["what"] and r["baseline"] and r["value"] and r["goal"] for r in rows)
