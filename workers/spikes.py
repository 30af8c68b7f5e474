"""Spike detection: incoming volume or negativity of a tenant far above its own recent baseline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

WINDOW = timedelta(minutes=15)
BASELINE = timedelta(days=7)
# A spike is this many times the usual volume of a window, and at least this many items (a quiet tenant
# receiving five comments is not in crisis).
VOLUME_FACTOR = 3.0
MIN_VOLUME = 20
# Or a negative share this far above the usual one, over at least this many analysed items.
NEGATIVE_JUMP = 0.3
MIN_ANALYSED = 10

_FIGURES = """
SELECT
  count(*) FILTER (WHERE received_at >= %(start)s) AS volume,
  count(*) FILTER (WHERE received_at >= %(start)s AND sentiment IS NOT NULL) AS analysed,
  count(*) FILTER (WHERE received_at >= %(start)s AND sentiment = 'NEGATIVE') AS negative,
  count(*) FILTER (WHERE received_at < %(start)s) AS past_volume,
  count(*) FILTER (WHERE received_at < %(start)s AND sentiment IS NOT NULL) AS past_analysed,
  count(*) FILTER (WHERE received_at < %(start)s AND sentiment = 'NEGATIVE') AS past_negative
FROM read.interactions
WHERE tenant_id = %(tenant)s AND received_at >= %(since)s AND received_at < %(end)s
"""


@dataclass(frozen=True)
class Spike:
    reason: str
    figures: dict[str, Any]


def figures_query(tenant_key: str, end: datetime) -> tuple[str, dict[str, Any]]:
    """The SQL (psycopg) that counts a tenant's last window and the baseline before it."""
    return _FIGURES, {"tenant": tenant_key, "start": end - WINDOW, "since": end - WINDOW - BASELINE, "end": end}


def judge(row: dict[str, Any]) -> Spike | None:
    """Whether the counts of the last window are a spike against the baseline."""
    windows = BASELINE / WINDOW
    usual = row["past_volume"] / windows
    volume = row["volume"]
    negative_share = row["negative"] / row["analysed"] if row["analysed"] else 0.0
    usual_share = row["past_negative"] / row["past_analysed"] if row["past_analysed"] else 0.0
    figures = {"volume": volume, "usual_volume": round(usual, 2), "negative_share": round(negative_share, 3),
               "usual_negative_share": round(usual_share, 3), "window_minutes": WINDOW.total_seconds() / 60}
    if volume >= MIN_VOLUME and volume > VOLUME_FACTOR * usual:
        return Spike(f"{volume} interactions in {figures['window_minutes']:.0f} minutes, usually "
                     f"{usual:.1f}", figures)
    if row["analysed"] >= MIN_ANALYSED and negative_share > usual_share + NEGATIVE_JUMP:
        return Spike(f"{negative_share:.0%} negative in {figures['window_minutes']:.0f} minutes, usually "
                     f"{usual_share:.0%}", figures)
    return None
