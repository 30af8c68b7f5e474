"""Reports on a real PostgreSQL: the figures of a month against values computed by hand (a month with a
daylight-saving change), the files rendered, and the monthly scheduler in the tenant's time zone."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import psycopg
import pypdfium2
import pytest
from psycopg.rows import dict_row

from domain.context import Actor, acting_as, clock
from domain.inbox import Incoming
from domain.interaction import Interaction
from domain.metrics import Observation
from domain.post import Variant
from domain.reports import Report
from domain.strategy import EditorialLine, Objective
from tests.integration.test_projections import caught_up
from workers.actors import WorkerDeps, request_monthly_reports
from workers.reports import collect, render

PARIS = ZoneInfo("Europe/Paris")
# October 2026 in Paris: 31 days and one hour (summer time ends on the 25th).
START = datetime(2026, 10, 1, tzinfo=PARIS)
END = datetime(2026, 11, 1, tzinfo=PARIS)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def october(domain: Any, agency: dict[str, Any]) -> dict[str, Any]:
    """A tenant's October, written through the domain on a simulated clock."""
    staff = Actor(id=agency["admin"], role="AGENCY_ADMIN")
    with acting_as(staff), clock(lambda: at("2026-09-01T08:00:00")):
        key = domain.create_tenant(agency["key"], "Rapport d'octobre", "NGO", "Europe/Paris").value
        domain.set_approval_policy(key, 0, False, None)
        # A channel without metric pulls: a worker running meanwhile adds nothing to the figures.
        channel = domain.connect_channel(key, "WEBHOOK", "@rapport", None,
                                         {"url": "https://hooks.example.org/parvis", "secret": "s3cret"}).value
        # A channel whose platform tells no impressions (as Mastodon): its engagements are not part of the rate.
        quiet = domain.connect_channel(key, "WEBHOOK", "@sans-impressions", None,
                                       {"url": "https://hooks.example.org/quiet", "secret": "s3cret"}).value
    with acting_as(staff), clock(lambda: at("2026-09-20T00:00:00")):
        domain.revise_strategy(key, "objectifs de l'automne", None, [
            Objective("Abonnés", "AWARENESS", "followers", 2000, None, 1000, at("2026-12-31T00:00:00")),
            Objective("Dons", "ACTION", "donations", 1000, None, 0, at("2026-12-31T00:00:00")),
            Objective("Taux d'engagement", "APPRECIATION", "engagement_rate", 0.05, None, 0.01, None),
        ], [], EditorialLine())
    with acting_as(staff), clock(lambda: at("2026-11-02T00:00:00")):
        domain.record_metrics(key, [
            Observation(channel, "followers", 1100, at("2026-09-30T21:00:00")),  # before: the level at the start
            Observation(channel, "followers", 1180, at("2026-10-15T10:00:00")),
            Observation(channel, "followers", 1250, at("2026-10-31T22:30:00")),  # 23:30 in Paris: still October
            Observation(channel, "followers", 9999, at("2026-10-31T23:30:00")),  # 00:30 on 1 November in Paris
            Observation(channel, "donations", 100, at("2026-09-25T12:00:00")),  # counts for the objective
            Observation(channel, "donations", 200, at("2026-10-10T12:00:00")),
            Observation(channel, "donations", 50, at("2026-10-31T22:30:00")),
            Observation(channel, "donations", 70, at("2026-10-31T23:30:00")),  # November in Paris
            Observation(channel, "engagements", 40, at("2026-10-05T12:00:00")),
            Observation(channel, "impressions", 1000, at("2026-10-05T12:00:00")),
            Observation(channel, "engagements", 60, at("2026-10-20T12:00:00")),
            Observation(channel, "impressions", 1000, at("2026-10-20T12:00:00")),
            Observation(quiet, "engagements", 500, at("2026-10-21T12:00:00")),
        ])
    # Two posts published in October, the second better; one in September.
    posts = []
    for body, published, engagements, impressions in (
        ("Chaque goutte compte #Eau #climat", "2026-10-12T09:00:00", 30, 300),
        ("Merci aux bénévoles ! #Climat #benevolat", "2026-10-26T09:00:00", 90, 600),
        ("Rentrée solidaire #rentree", "2026-09-15T09:00:00", 500, 1000),
    ):
        when = at(published)
        with acting_as(staff), clock(lambda w=when: w - timedelta(hours=1)):
            post = domain.draft_post(key, agency["admin"], [Variant(channel, body)], None, None, None, "COLD").value
            domain.submit_post(post)
            domain.schedule_post(post, when)
        with acting_as(staff), clock(lambda w=when: w):
            domain.start_publishing(post)
            domain.record_variant_published(post, channel, f"ext-{len(posts)}", None, when)
        with acting_as(staff), clock(lambda: at("2026-11-02T00:00:00")):
            domain.record_metrics(key, [Observation(channel, "engagements", engagements, when, post),
                                        Observation(channel, "impressions", impressions, when, post)])
        posts.append(post)
    # Three comments answered after 10, 30 and 60 minutes; one never answered.
    received = at("2026-10-10T09:00:00")
    with clock(lambda: received):
        domain.ingest_interactions(key, [Incoming(channel, "COMMENT", f"c{n}", f"@fan{n}", "Bravo", received)
                                         for n in range(4)])
    for n, minutes in enumerate((10, 30, 60)):
        with acting_as(staff), clock(lambda m=minutes: received + timedelta(minutes=m)):
            domain.decide_interaction(Interaction.create_id(key, channel, f"c{n}"), agency["admin"], "APPROVE",
                                      None, None, None)
    return {"key": key, "channel": channel, "posts": posts}


async def test_a_months_figures_equal_the_values_computed_by_hand(
    projector: Any, october: dict[str, Any], conn: asyncpg.Connection
) -> None:
    await caught_up(conn)
    data = await collect(conn, october["key"], START, END)

    followers, donations, rate = data.kpis
    # Followers: a level, the latest value before the end of October in Paris (not the 9,999 of 1 November).
    assert (followers.current, followers.progress) == (1250, 0.25)
    # Donations: a flow since the objective began (20 September), up to the end of October in Paris.
    assert (donations.current, donations.progress) == (350, 0.35)
    # The expected share: 20 Sept → 31 Dec is 102 days; 20 Sept → 1 Nov 00:00 Paris (minus 1 µs) is 41 days 23 h.
    elapsed = (END - timedelta(microseconds=1) - at("2026-09-20T00:00:00")).total_seconds()
    assert donations.expected == round(elapsed / timedelta(days=102).total_seconds(), 4)
    assert donations.on_track is False  # 0.35 < 0.4119
    # Engagement rate since 20 Sept (the post of 15 Sept is before): 40 + 60 + 30 + 90 over 1000 + 1000 + 300 + 600.
    assert rate.current == round(220 / 2900, 6)
    assert rate.progress == round((round(220 / 2900, 6) - 0.01) / 0.04, 4)  # from the rate as shown
    # The flow is drawn as where the objective stood each day of October: 100 before, then 300, then 350.
    assert [v for _, v in donations.points] == [300, 350]
    assert [p.astimezone(PARIS).date().isoformat() for p, _ in donations.points] == ["2026-10-10", "2026-10-31"]

    by_name = {f["channel"]: f for f in data.followers}
    channel, quiet = by_name["Webhook @rapport"], by_name["Webhook @sans-impressions"]
    assert (channel["start"], channel["end"], channel["growth"]) == (1100, 1250, 150)
    # October only: engagements 40 + 60 + 30 + 90 over impressions 1000 + 1000 + 300 + 600; the 500 engagements
    # of the channel without impressions count as engagements, not in the rate.
    assert data.engagement["rate"] == round(220 / 2900, 6)
    assert data.engagement["engagements"] == 720
    assert channel["engagement_rate"] == round(220 / 2900, 6)
    assert (quiet["engagements"], quiet["engagement_rate"], quiet["growth"]) == (500, None, None)
    # Per day in Paris: 40/1000 on the 5th, 30/300 on the 12th, 60/1000 on the 20th (the 21st has no impressions).
    assert [(p.astimezone(PARIS).day, v) for p, v in data.engagement_points] == [
        (5, 0.04), (12, 0.1), (20, 0.06), (26, 0.15)]

    assert [p["body"][:5] for p in data.top_posts] == ["Merci", "Chaqu"]
    assert [(p["engagements"], p["engagement_rate"]) for p in data.top_posts] == [(90, 0.15), (30, 0.1)]
    # #climat is in both posts (case folded): 90 + 30; #benevolat 90; #eau 30.
    assert [(t["tag"], t["posts"], t["engagements"]) for t in data.top_hashtags] == [
        ("#climat", 2, 120), ("#benevolat", 1, 90), ("#eau", 1, 30)]

    assert data.moderation["received"] == 4
    assert data.moderation["answered"] == 3
    assert data.moderation["median_response_minutes"] == 30
    assert data.period == "01 Oct 2026 \u2013 31 Oct 2026"


async def test_the_report_is_rendered_as_html_with_a_chart_per_kpi_and_as_a_pdf(
    projector: Any, october: dict[str, Any], conn: asyncpg.Connection
) -> None:
    await caught_up(conn)
    data = await collect(conn, october["key"], START, END)
    html, pdf = render(data)

    page = html.content.decode()
    assert len(re.findall(r'<figure class="chart kpi-chart"', page)) == len(data.kpis) == 3
    assert page.count("<svg") == len(data.kpis) + 2  # and the followers and engagement charts
    assert "Agence Test" in page  # the agency's name and colour
    assert "#0b6e4f" in page
    assert "Merci aux b\u00e9n\u00e9voles" in page
    assert html.describe()["size"] == len(html.content)

    document = pypdfium2.PdfDocument(pdf.content)
    assert len(document) >= 1
    image = document[0].render(scale=1).to_pil().convert("L")
    histogram = image.histogram()
    white = histogram[255]
    assert white < image.width * image.height * 0.97  # something is drawn
    assert sum(histogram[:128]) > 2000  # text and chart lines, not a blank page
    text = document[0].get_textpage().get_text_range()
    assert "Rapport d'octobre" in text
    assert "Objectives" in text
    document.close()
    assert io.BytesIO(pdf.content).read(5) == b"%PDF-"


async def test_the_monthly_report_is_asked_for_once_on_the_first_day_in_the_tenants_time_zone(
    projector: Any, domain: Any, agency: dict[str, Any], conn: asyncpg.Connection, settings: Any
) -> None:
    with acting_as(Actor(id=agency["admin"], role="AGENCY_ADMIN")), clock(lambda: at("2026-09-01T08:00:00")):
        key = domain.create_tenant(agency["key"], "Mensuel", "NGO", "Pacific/Auckland").value
    await caught_up(conn)

    def query(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with psycopg.connect(settings.database_url, row_factory=dict_row, autocommit=True) as c:
            return list(c.execute(sql, params).fetchall())  # type: ignore[arg-type]

    deps = WorkerDeps(domain=domain, secrets=None, connectors={}, analyzer=None, query=query)
    october_report = Report.create_id(key, Report.monthly_key(date(2026, 10, 1)))

    def ours() -> list[str]:
        return [october_report] if domain.exists(october_report) else []

    # 1 November 05:59 in Auckland (NZDT, +13): not yet.
    with clock(lambda: at("2026-10-31T16:59:00")):
        request_monthly_reports(deps)
    assert ours() == []
    # 06:00: October's report, asked for once however many workers ask.
    with clock(lambda: at("2026-10-31T17:00:00")):
        request_monthly_reports(deps)
        await caught_up(conn)
        request_monthly_reports(deps)
    (report_id,) = ours()
    report = domain.report(report_id)
    zone = ZoneInfo("Pacific/Auckland")
    assert report.period_start == datetime(2026, 10, 1, tzinfo=zone)
    assert report.period_end == datetime(2026, 11, 1, tzinfo=zone)
    assert (report.trigger, report.requested_by) == ("monthly", "system")
