"""`make bench BENCH_ARGS=--soak` in short: 25 s of the soak's mixed load, as CI runs it (the full run: ten minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

KINDS = ["draftPost", "submitPost", "approvePost", "schedulePost", "decideInteraction", "dashboard",
         "ingestInteractions", "webhook"]


@pytest.mark.slow
def test_a_short_soak_has_no_error_and_every_operation_and_subscription_makes_progress(
    servers: tuple[str, str], tmp_path: Path
) -> None:
    # Given the services of the test session
    output = tmp_path / "soak-results.json"
    env = {**os.environ, "PARVIS_DATABASE_URL": servers[0], "PARVIS_REDIS_URL": servers[1]}

    # When the soak runs for 25 seconds
    done = subprocess.run([sys.executable, "-m", "tests.bench", "--soak", "--minutes", "0.42", "--output",
                           str(output)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=170, check=False)

    # Then it prints its table and its JSON says what each kind of operation did
    assert output.exists(), done.stderr[-3000:]
    assert "Parvis soak" in done.stdout
    results = json.loads(output.read_text())
    load = results["figures"]["load"]
    kinds = load["kinds"]
    assert sorted(kinds) == sorted(KINDS)

    # And nothing failed: no transport error, no status but 200, no GraphQL error, no subscription dropped or silent
    errors = {kind: t["first_errors"] for kind, t in kinds.items() if t["errors"]}
    errors |= {f"sub {s['operation']}": s["first_errors"] for s in load["subscriptions"] if s["errors"]}
    if load["probe"]["errors"]:
        errors["lag probe"] = load["probe"]["first_errors"]
    assert errors == {}
    assert results["figures"]["exited"] == {}
    jobs = results["figures"]["jobs"]
    assert sum(j["failed"] for j in jobs.values()) == 0
    assert results["figures"]["job_metrics"].get("runs error", 0) == 0

    # And every kind of operation, every subscription, the lag probe and the workers made progress
    assert {kind: t["done"] for kind, t in kinds.items() if t["done"] == 0} == {}
    assert [s["operation"] for s in load["subscriptions"] if s["messages"] == 0] == []
    assert {s["operation"] for s in load["subscriptions"]} == {"postUpdates", "moderationQueue", "history"}
    assert load["probe"]["commands"] > 0
    assert jobs["publish_post"]["done"] > 0
    assert jobs["analyse_interaction"]["done"] > 0
