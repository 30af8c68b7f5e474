"""Metrics over HTTP: batched observations, KPI progress and series, against values computed by hand."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support import Client

CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } } }"
REVISE = """mutation($i: ReviseStrategyInput!) { reviseStrategy(input: $i) {
  strategy { version effectiveFrom objectives { id metric } } userErrors { field message } } }"""
RECORD = """mutation($i: RecordMetricsInput!) { recordMetrics(input: $i) {
  accepted userErrors { code field message } position consistent } }"""
KPIS = """query($id: ID!, $at: DateTime) { tenant(id: $id) {
  kpis(at: $at) { objective { metric target } current progress expected onTrack } } }"""
SERIES = """query($id: ID!, $m: String!, $c: ID, $from: DateTime!, $to: DateTime!, $g: Granularity!) { tenant(id: $id) {
  metricSeries(metric: $m, channelId: $c, from: $from, to: $to, granularity: $g) { at value } } }"""


@pytest.fixture(scope="module")
def tenant(admin: Client) -> dict[str, Any]:
    tid = admin.data(CREATE, {"i": {"name": f"Mesures {uuid.uuid4().hex[:4]}", "kind": "NGO",
                                    "timezone": "Europe/Paris"}})["createTenant"]["tenant"]["id"]
    channels = [admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": h}})[
        "connectChannel"]["channel"]["id"] for h in ("@a", "@b")]
    return {"id": tid, "channels": channels}


def obs(channel: str, metric: str, value: float, at: datetime, **extra: Any) -> dict[str, Any]:
    return {"channelId": channel, "metric": metric, "value": value, "at": at.isoformat(), **extra}


def record(admin: Client, tenant: dict[str, Any], observations: list[dict[str, Any]]) -> dict[str, Any]:
    return admin.data(RECORD, {"i": {"tenantId": tenant["id"], "observations": observations}})[  # type: ignore[no-any-return]
        "recordMetrics"]


def total(admin: Client, tenant: dict[str, Any], metric: str, start: datetime, end: datetime) -> float:
    points = admin.data(SERIES, {"id": tenant["id"], "m": metric, "c": None, "from": start.isoformat(),
                                 "to": end.isoformat(), "g": "MONTH"})["tenant"]["metricSeries"]
    return sum(p["value"] for p in points)


def test_ten_thousand_observations_in_one_call_and_a_bad_one_stores_nothing(
    admin: Client, tenant: dict[str, Any]
) -> None:
    start = datetime(2026, 9, 1, tzinfo=UTC)
    batch = [obs(tenant["channels"][n % 2], "impressions", 1.0, start + timedelta(minutes=n)) for n in range(10_000)]
    payload = record(admin, tenant, batch)
    assert (payload["accepted"], payload["userErrors"], payload["consistent"]) == (10_000, [], True)
    assert total(admin, tenant, "impressions", start, start + timedelta(days=10)) == 10_000

    unknown = record(admin, tenant, [obs(tenant["channels"][0], "impressions", 5, start),
                                     obs("Q2hhbm5lbDpub3BlCg", "impressions", 5, start)])
    assert unknown["accepted"] == 0
    assert unknown["userErrors"][0]["field"] == ["input", "observations", "1", "channelId"]
    bad_metric = record(admin, tenant, [obs(tenant["channels"][0], "Not A Metric", 5, start)])
    assert bad_metric["userErrors"][0]["field"] == ["input", "observations", "0", "metric"]
    # A value JSON cannot carry as a finite number is refused before it reaches the domain, naming its path.
    infinite = json.dumps({"query": RECORD, "variables": {"i": {"tenantId": tenant["id"], "observations": [
        obs(tenant["channels"][0], "impressions", float("inf"), start)]}}})  # "Infinity": not JSON, yet sent
    body = httpx.post(admin.url, content=infinite, headers={"authorization": f"Bearer {admin.token}",
                                                           "content-type": "application/json"}).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "observations" in body["errors"][0]["message"]
    assert total(admin, tenant, "impressions", start, start + timedelta(days=10)) == 10_000  # nothing stored


def test_kpi_progress_equals_the_values_computed_by_hand(admin: Client, tenant: dict[str, Any]) -> None:
    a, b = tenant["channels"]
    revised = admin.data(REVISE, {"i": {"tenantId": tenant["id"], "reason": "objectifs chiffrés", "personas": [],
                                        "editorialLine": {}, "objectives": [
        {"title": "Abonnés", "intent": "AWARENESS", "metric": "followers", "baseline": 1000, "target": 2000,
         "deadline": (datetime.now(UTC) + timedelta(days=10)).isoformat()},
        {"title": "Bénévoles", "intent": "ACTION", "metric": "volunteer_signups", "target": 100,
         "deadline": (datetime.now(UTC) + timedelta(days=10)).isoformat()}]}})["reviseStrategy"]
    start = datetime.fromisoformat(revised["strategy"]["effectiveFrom"])
    record(admin, tenant, [
        obs(a, "followers", 1400, start + timedelta(seconds=1)),
        obs(a, "followers", 1500, start + timedelta(seconds=2)),
        obs(b, "followers", 200, start + timedelta(seconds=3)),
        obs(a, "volunteer_signups", 10, start + timedelta(seconds=1)),
        obs(b, "volunteer_signups", 15, start + timedelta(seconds=2)),
        obs(a, "volunteer_signups", 5, start + timedelta(seconds=3)),
        obs(a, "volunteer_signups", 999, start - timedelta(days=1)),  # before the objective: not counted
    ])
    at = start + timedelta(days=2)
    kpis = {k["objective"]["metric"]: k for k in
            admin.data(KPIS, {"id": tenant["id"], "at": at.isoformat()})["tenant"]["kpis"]}
    # Followers, a level: the latest of each channel (1500 + 200), from 1000 toward 2000 -> 0.7 of the way.
    assert kpis["followers"]["current"] == 1700
    assert kpis["followers"]["progress"] == pytest.approx(0.7)
    # Sign-ups, a flow: 10 + 15 + 5 since the objective was set, toward 100 -> 0.3; 2 of 10 days gone -> on track.
    assert kpis["volunteer_signups"]["current"] == 30
    assert kpis["volunteer_signups"]["progress"] == pytest.approx(0.3)
    assert kpis["volunteer_signups"]["expected"] == pytest.approx(0.2, abs=1e-3)
    assert kpis["volunteer_signups"]["onTrack"] is True
    before = admin.data(KPIS, {"id": tenant["id"], "at": (start - timedelta(seconds=1)).isoformat()})
    assert before["tenant"]["kpis"] == []  # no strategy in force yet


def test_series_follow_the_tenants_calendar_across_a_daylight_saving_change(
    admin: Client, tenant: dict[str, Any]
) -> None:
    a = tenant["channels"][0]
    # Paris leaves summer time on 25 October 2026: that day lasts 25 hours, from 22:00 UTC to 23:00 UTC.
    record(admin, tenant, [
        obs(a, "donations_amount", 10, datetime(2026, 10, 24, 21, 30, tzinfo=UTC)),  # 24 Oct, 23:30 in Paris
        obs(a, "donations_amount", 20, datetime(2026, 10, 24, 22, 30, tzinfo=UTC)),  # 25 Oct, 00:30 (summer)
        obs(a, "donations_amount", 30, datetime(2026, 10, 25, 22, 30, tzinfo=UTC)),  # 25 Oct, 23:30 (winter)
        obs(a, "donations_amount", 40, datetime(2026, 10, 25, 23, 30, tzinfo=UTC)),  # 26 Oct, 00:30
        obs(a, "engagements", 50, datetime(2026, 10, 20, 10, tzinfo=UTC)),
        obs(a, "impressions", 1000, datetime(2026, 10, 20, 11, tzinfo=UTC)),
        obs(a, "engagements", 20, datetime(2026, 10, 21, 10, tzinfo=UTC)),
        obs(a, "reach", 400, datetime(2026, 10, 21, 11, tzinfo=UTC)),  # no impressions that day: reach counts
    ])
    window = {"id": tenant["id"], "c": a, "from": "2026-10-19T00:00:00+02:00", "to": "2026-11-02T00:00:00+01:00"}
    days = admin.data(SERIES, {**window, "m": "donations_amount", "g": "DAY"})["tenant"]["metricSeries"]
    assert days == [{"at": "2026-10-23T22:00:00+00:00", "value": 10.0},
                    {"at": "2026-10-24T22:00:00+00:00", "value": 50.0},  # the 25-hour day
                    {"at": "2026-10-25T23:00:00+00:00", "value": 40.0}]
    weeks = admin.data(SERIES, {**window, "m": "donations_amount", "g": "WEEK"})["tenant"]["metricSeries"]
    assert weeks == [{"at": "2026-10-18T22:00:00+00:00", "value": 60.0},
                     {"at": "2026-10-25T23:00:00+00:00", "value": 40.0}]
    rate = admin.data(SERIES, {**window, "m": "engagement_rate", "g": "DAY"})["tenant"]["metricSeries"]
    assert rate == [{"at": "2026-10-19T22:00:00+00:00", "value": 0.05},
                    {"at": "2026-10-20T22:00:00+00:00", "value": 0.05}]


DRAFT = "mutation($i: DraftPostInput!) { draftPost(input: $i) { post { id } } }"
POST = "query($id: ID!) { node(id: $id) { ... on Post { engagements engagementRate } } }"


def test_a_posts_engagement_rate_is_its_engagements_over_impressions_or_reach(
    admin: Client, tenant: dict[str, Any]
) -> None:
    a, b = tenant["channels"]
    posts = [admin.data(DRAFT, {"i": {"tenantId": tenant["id"], "variants": [
        {"channelId": a, "body": f"Post {n}"}, {"channelId": b, "body": f"Post {n}"}]}})["draftPost"]["post"]["id"]
        for n in range(3)]
    at = datetime(2026, 10, 2, 9, tzinfo=UTC)
    record(admin, tenant, [
        # Post 0 on both channels: (30 + 10) / (400 + 100).
        obs(a, "engagements", 30, at, postId=posts[0]), obs(a, "impressions", 400, at, postId=posts[0]),
        obs(b, "engagements", 10, at, postId=posts[0]), obs(b, "impressions", 100, at, postId=posts[0]),
        # Post 1: no impressions, so reach: 12 / 80.
        obs(a, "engagements", 12, at, postId=posts[1]), obs(a, "reach", 80, at, postId=posts[1]),
        # Post 2: engagements only (as Mastodon counts them): no rate.
        obs(a, "engagements", 7, at, postId=posts[2]),
    ])
    figures = [admin.data(POST, {"id": p})["node"] for p in posts]
    assert figures == [{"engagements": 40, "engagementRate": 0.08},
                       {"engagements": 12, "engagementRate": 0.15},
                       {"engagements": 7, "engagementRate": None}]
