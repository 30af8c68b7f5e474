"""The Grafana dashboard plots only metrics the processes export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "parvis-dashboard.json"


def test_every_metric_of_the_dashboard_is_exported() -> None:
    import api.schema  # noqa: F401 - registers the API's metrics
    import projections.telemetry  # noqa: F401
    import workers.telemetry  # noqa: F401

    # A labelled metric has no sample until it is used: its family tells the series it will have.
    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}
    exported = {m.name + s for m in REGISTRY.collect() for s in suffixes.get(m.type, ("",))}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = {name for p in panels for t in p["targets"] for name in re.findall(r"\bparvis_[a-z_]+", t["expr"])}
    assert len(panels) >= 8
    assert used
    assert sorted(used - exported) == []
