"""The monthly report of a tenant: figures read from the read models, charts, HTML and PDF.

Everything a client director asks of a month: where each objective stands against its target (one chart per
KPI), follower growth, engagement rate, the posts and hashtags that worked, and how the inbox was handled.
Charts are drawn once by matplotlib (SVG inlined in the HTML, PNG in the PDF); the PDF is laid out by
reportlab; both are branded with the agency's name and colour."""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib.dates as mdates
from jinja2 import Environment, select_autoescape
from matplotlib.figure import Figure
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from domain.metrics import STOCK_METRICS
from projections import figures
from projections.figures import ENGAGEMENT_RATE, Reader

TOP = 5
_HASHTAG = re.compile(r"(?<![\w#])#(\w{2,60})", re.UNICODE)


@dataclass
class Chart:
    key: str
    title: str
    svg: str
    png: bytes


@dataclass
class KpiRow:
    title: str
    metric: str
    baseline: float
    target: float
    current: float | None
    progress: float | None
    expected: float | None
    on_track: bool
    deadline: str | None
    points: list[tuple[datetime, float]]


@dataclass
class ReportData:
    agency: str
    color: str
    tenant: str
    timezone: str
    start: datetime
    end: datetime
    kpis: list[KpiRow]
    followers: list[dict[str, Any]]
    follower_points: list[tuple[datetime, float]]
    engagement: dict[str, Any]
    engagement_points: list[tuple[datetime, float]]
    top_posts: list[dict[str, Any]]
    top_hashtags: list[dict[str, Any]]
    moderation: dict[str, Any]
    charts: list[Chart] = field(default_factory=list)

    @property
    def period(self) -> str:
        zone = ZoneInfo(self.timezone)
        last = (self.end - timedelta(microseconds=1)).astimezone(zone)
        return f"{self.start.astimezone(zone):%d %b %Y} \u2013 {last:%d %b %Y}"

    def summary(self) -> dict[str, Any]:
        """The headline figures, recorded in the report's event (small, reproducible)."""
        return {
            "kpis": [{"title": k.title, "metric": k.metric, "current": k.current, "progress": k.progress,
                      "on_track": k.on_track} for k in self.kpis],
            "followers": sum(f["end"] or 0 for f in self.followers),
            "engagement_rate": self.engagement["rate"],
            "interactions": self.moderation["received"],
            "median_response_minutes": self.moderation["median_response_minutes"],
        }


# ---------------------------------------------------------------------------------------------- figures
async def collect(db: Reader, key: str, start: datetime, end: datetime) -> ReportData:
    """Read every figure of the report of tenant `key` over [start, end)."""
    head = (await db.fetch(
        "SELECT t.name, t.timezone, a.name AS agency, a.primary_color FROM read.tenants t "
        "JOIN auth.agencies a ON a.agency_id = t.agency_id WHERE t.tenant_id = $1", key))[0]
    zone = head["timezone"]
    last = end - timedelta(microseconds=1)
    kpis = []
    for k in await figures.kpis(db, key, last):
        o = k.objective
        metric = o["metric"]
        channel = o.get("channel_id")
        daily = await figures.series(db, key, zone, metric, channel, start, end, "day")
        if metric not in STOCK_METRICS and metric != ENGAGEMENT_RATE:
            # A flow is drawn as where the objective stood each day: its value at the start, plus each day's sum.
            before = await figures.kpi(db, key, o, k.start, start - timedelta(microseconds=1))
            running = before.current if before.current is not None and k.start < start else o.get("baseline") or 0.0
            cumulative = []
            for at, value in daily:
                running += value
                cumulative.append((at, running))
            daily = cumulative
        kpis.append(KpiRow(o["title"], metric, o.get("baseline") or 0.0, o["target"], k.current, k.progress,
                           k.expected, k.on_track, o.get("deadline"), daily))
    channels = await db.fetch(
        "SELECT id, platform, handle FROM read.channels WHERE tenant_id = $1 ORDER BY created_at, id", key)
    followers = []
    for c in channels:
        level = "SELECT value FROM read.metric_observations WHERE tenant_id = $1 AND channel_id = $2 " \
                "AND metric = 'followers' AND post_id = '' AND at < $3 ORDER BY at DESC LIMIT 1"
        first = await db.fetchval(level, key, c["id"], start)
        now = await db.fetchval(level, key, c["id"], end)
        rate = await figures.engagement(db, key, channel=c["id"], start=start, end=last)
        if first is None and now is None and rate.engagements is None:
            continue
        followers.append({"channel": f"{c['platform'].title()} {c['handle']}", "start": first, "end": now,
                          "growth": None if first is None or now is None else now - first,
                          "engagement_rate": rate.value, "engagements": rate.engagements})
    total = await figures.engagement(db, key, start=start, end=last)
    posts = await _top_posts(db, key, start, end)
    return ReportData(
        agency=head["agency"], color=head["primary_color"], tenant=head["name"], timezone=zone, start=start,
        end=end, kpis=kpis, followers=followers,
        follower_points=await figures.series(db, key, zone, "followers", None, start, end, "day"),
        engagement={"rate": total.value, "engagements": total.engagements, "impressions": total.impressions,
                    "reach": total.reach},
        engagement_points=await figures.series(db, key, zone, ENGAGEMENT_RATE, None, start, end, "day"),
        top_posts=posts[:TOP],
        top_hashtags=hashtags(posts)[:TOP],
        moderation=await _moderation(db, key, start, end),
    )


async def _top_posts(db: Reader, key: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Posts published in the period, with their engagements (every channel), best first."""
    rows = await db.fetch(
        """
        SELECT p.id, v->>'channel_id' AS channel_id, v->>'body' AS body, (v->>'published_at')::timestamptz AS at,
               c.platform, c.handle
        FROM read.posts p CROSS JOIN jsonb_array_elements(p.variants) v
        LEFT JOIN read.channels c ON c.tenant_id = p.tenant_id AND c.id = v->>'channel_id'
        WHERE p.tenant_id = $1 AND (v->>'published_at')::timestamptz >= $2 AND (v->>'published_at')::timestamptz < $3
        """, key, start, end)
    posts: dict[str, dict[str, Any]] = {}
    for r in rows:
        post = posts.setdefault(r["id"], {"id": r["id"], "body": r["body"], "published_at": r["at"], "channels": []})
        post["channels"].append(f"{(r['platform'] or '').title()} {r['handle'] or ''}".strip())
        post["published_at"] = min(post["published_at"], r["at"])
    rates = await figures.engagement_by_post(db, list(posts))
    for post in posts.values():
        rate = rates.get(post["id"], figures.Rate(None, None, None))
        post.update(engagements=rate.engagements or 0.0, impressions=rate.impressions, engagement_rate=rate.value)
    return sorted(posts.values(), key=lambda p: (-p["engagements"], p["published_at"], p["id"]))


async def _moderation(db: Reader, key: str, start: datetime, end: datetime) -> dict[str, Any]:
    rows = await db.fetch(
        "SELECT kind, status, received_at, answered_at, breached FROM read.interactions "
        "WHERE tenant_id = $1 AND received_at >= $2 AND received_at < $3", key, start, end)
    minutes = [(r["answered_at"] - r["received_at"]).total_seconds() / 60 for r in rows if r["answered_at"]]
    return {
        "received": len(rows),
        "by_kind": dict(sorted(Counter(r["kind"] for r in rows).items())),
        "by_status": dict(sorted(Counter(r["status"] for r in rows).items())),
        "answered": len(minutes),
        "breached": sum(1 for r in rows if r["breached"]),
        "median_response_minutes": round(median(minutes), 1) if minutes else None,
    }


def hashtags(posts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hashtags of the period's posts, ranked by the engagements of the posts that carry them."""
    tags: dict[str, dict[str, Any]] = {}
    for post in posts:
        for tag in {t.lower() for t in _HASHTAG.findall(post["body"] or "")}:
            entry = tags.setdefault(tag, {"tag": f"#{tag}", "posts": 0, "engagements": 0.0})
            entry["posts"] += 1
            entry["engagements"] += post["engagements"]
    return sorted(tags.values(), key=lambda t: (-t["engagements"], -t["posts"], t["tag"]))


# ---------------------------------------------------------------------------------------------- charts
def _chart(key: str, title: str, points: list[tuple[datetime, float]], color: str, timezone: str,
           target: float | None = None, percent: bool = False) -> Chart:
    # Figure, not pyplot: no global state, so the worker's threads can draw at the same time.
    fig = Figure(figsize=(7.5, 2.6), dpi=110)
    ax = fig.subplots()
    zone = ZoneInfo(timezone)
    if points:
        xs = mdates.date2num([at.astimezone(zone) for at, _ in points])
        ys = [value * 100 if percent else value for _, value in points]
        ax.plot(xs, ys, color=color, linewidth=2, marker="o", markersize=3)
        ax.fill_between(xs, ys, min(ys), color=color, alpha=0.12)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b", tz=zone))  # type: ignore[no-untyped-call]
    else:
        ax.text(0.5, 0.5, "no observation in this period", ha="center", va="center", transform=ax.transAxes,
                color="#666666")
    if target is not None:
        ax.axhline(target * 100 if percent else target, color="#444444", linestyle="--", linewidth=1, label="target")
        ax.legend(loc="upper left", frameon=False, fontsize=8)
    ax.set_title(title, loc="left", fontsize=10, color="#222222")
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    svg, png = io.StringIO(), io.BytesIO()
    fig.savefig(svg, format="svg")
    fig.savefig(png, format="png")
    # The SVG is inlined: drop its XML prologue and doctype.
    text = svg.getvalue()
    return Chart(key, title, text[text.index("<svg"):], png.getvalue())


def draw(data: ReportData) -> ReportData:
    """One chart per KPI, then follower growth and engagement rate."""
    data.charts = [
        _chart(f"kpi-{i}", k.title, k.points, data.color, data.timezone, target=k.target,
               percent=k.metric == ENGAGEMENT_RATE)
        for i, k in enumerate(data.kpis)
    ]
    data.charts.append(_chart("followers", "Followers, all channels", data.follower_points, data.color, data.timezone))
    data.charts.append(_chart("engagement", "Engagement rate (%)", data.engagement_points, data.color,
                              data.timezone, percent=True))
    return data


# ---------------------------------------------------------------------------------------------- HTML
def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "\u2013"
    return f"{value:,.{digits}f}".replace(",", "\u202f")


def _percent(value: float | None) -> str:
    return "\u2013" if value is None else f"{value * 100:.1f} %"


def _metric_value(value: float | None, metric: str) -> str:
    if metric == ENGAGEMENT_RATE:
        return _percent(value)
    return _number(value, 0 if value is None or float(value).is_integer() or abs(value) >= 100 else 1)


_TEMPLATES = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_TEMPLATES.filters.update(number=_number, percent=_percent, metric=_metric_value)
_HTML = _TEMPLATES.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ d.tenant }} — report {{ d.period }}</title>
<style>
 body { font-family: system-ui, sans-serif; color: #222; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
 header { border-bottom: 6px solid {{ d.color }}; margin-bottom: 1.5rem; }
 header .agency { color: {{ d.color }}; font-weight: 700; letter-spacing: .05em; text-transform: uppercase; }
 h1 { margin: .2rem 0 .6rem; } h2 { color: {{ d.color }}; margin-top: 2rem; }
 table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
 th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }
 td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
 .on { color: #1a7f37; } .off { color: #b42318; } figure { margin: 0 0 1rem; } svg { max-width: 100%; height: auto; }
</style></head>
<body>
<header><div class="agency">{{ d.agency }}</div><h1>{{ d.tenant }}</h1><p>Monthly report · {{ d.period }}
 · {{ d.timezone }}</p></header>

<section id="kpis"><h2>Objectives</h2>
{% if d.kpis %}<table><tr><th>Objective</th><th>KPI</th><th class="n">Baseline</th><th class="n">Now</th>
<th class="n">Target</th><th class="n">Progress</th><th>On track</th></tr>
{% for k in d.kpis %}<tr><td>{{ k.title }}</td><td>{{ k.metric }}</td>
<td class="n">{{ k.baseline|metric(k.metric) }}</td>
<td class="n">{{ k.current|metric(k.metric) }}</td><td class="n">{{ k.target|metric(k.metric) }}</td>
<td class="n">{{ k.progress|percent }}</td>
<td class="{{ 'on' if k.on_track else 'off' }}">{{ 'yes' if k.on_track else 'no' }}{% if k.expected is not none %}
 (expected {{ k.expected|percent }}){% endif %}</td></tr>{% endfor %}</table>
{% for c in d.charts if c.key.startswith('kpi-') %}<figure class="chart kpi-chart" id="{{ c.key }}">{{ c.svg|safe }}
<figcaption>{{ c.title }}</figcaption></figure>{% endfor %}
{% else %}<p>No strategy with objectives was in force over this period.</p>{% endif %}</section>

<section id="audience"><h2>Audience and engagement</h2>
<p>Engagement rate over the period: <strong>{{ d.engagement.rate|percent }}</strong>
({{ d.engagement.engagements|number }} engagements{% if d.engagement.impressions %},
{{ d.engagement.impressions|number }} impressions{% elif d.engagement.reach %},
reach {{ d.engagement.reach|number }}{% endif %}).</p>
{% if d.followers %}<table><tr><th>Channel</th><th class="n">Followers at start</th><th class="n">At end</th>
<th class="n">Growth</th><th class="n">Engagement rate</th></tr>
{% for f in d.followers %}<tr><td>{{ f.channel }}</td><td class="n">{{ f.start|number }}</td>
<td class="n">{{ f.end|number }}</td><td class="n">{{ f.growth|number }}</td>
<td class="n">{{ f.engagement_rate|percent }}</td></tr>{% endfor %}</table>{% endif %}
{% for c in d.charts if not c.key.startswith('kpi-') %}<figure class="chart" id="{{ c.key }}">{{ c.svg|safe }}
<figcaption>{{ c.title }}</figcaption></figure>{% endfor %}</section>

<section id="posts"><h2>Top posts</h2>
{% if d.top_posts %}<table><tr><th>Post</th><th>Channels</th><th class="n">Engagements</th><th class="n">Rate</th></tr>
{% for p in d.top_posts %}<tr><td>{{ p.body|truncate(140) }}</td><td>{{ p.channels|join(', ') }}</td>
<td class="n">{{ p.engagements|number }}</td><td class="n">{{ p.engagement_rate|percent }}</td></tr>{% endfor %}</table>
{% else %}<p>No post was published in this period.</p>{% endif %}
<h2>Top hashtags</h2>
{% if d.top_hashtags %}<table><tr><th>Hashtag</th><th class="n">Posts</th><th class="n">Engagements</th></tr>
{% for t in d.top_hashtags %}<tr><td>{{ t.tag }}</td><td class="n">{{ t.posts }}</td>
<td class="n">{{ t.engagements|number }}</td></tr>{% endfor %}</table>
{% else %}<p>No hashtag in this period's posts.</p>{% endif %}</section>

<section id="moderation"><h2>Moderation</h2>
<p>{{ d.moderation.received }} interactions received, {{ d.moderation.answered }} answered;
median response time {% if d.moderation.median_response_minutes is not none %}<strong>{{
 d.moderation.median_response_minutes }} min</strong>{% else %}&ndash;{% endif %};
{{ d.moderation.breached }} past the response target.</p>
{% if d.moderation.by_kind %}<table><tr><th>Kind</th><th class="n">Received</th></tr>
{% for kind, n in d.moderation.by_kind.items() %}<tr><td>{{ kind }}</td><td class="n">{{ n }}</td></tr>{% endfor %}
</table>{% endif %}</section>
<footer><p>Made by Parvis for {{ d.agency }}.</p></footer>
</body></html>
""")


def render_html(data: ReportData) -> str:
    return _HTML.render(d=data)


# ---------------------------------------------------------------------------------------------- PDF
def render_pdf(data: ReportData) -> bytes:
    """The same report on A4, with the charts as images."""
    brand = colors.HexColor(data.color)
    styles = getSampleStyleSheet()
    h1 = ParagraphStyle("h1", parent=styles["Title"], alignment=0, textColor=colors.black, spaceAfter=4)
    h2 = ParagraphStyle("h2", parent=styles["Heading2"], textColor=brand)
    agency = ParagraphStyle("agency", parent=styles["Normal"], textColor=brand, fontName="Helvetica-Bold")
    body = styles["BodyText"]
    cell = ParagraphStyle("cell", parent=body, fontSize=8, leading=10)

    def esc(text: Any) -> str:
        return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def table(header: list[str], rows: list[list[Any]]) -> Table:
        t = Table([header] + [[Paragraph(esc(v), cell) for v in r] for r in rows], repeatRows=1, hAlign="LEFT")
        t.setStyle(TableStyle([
            ("BACKGROUND", (0, 0), (-1, 0), brand), ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
            ("FONTSIZE", (0, 0), (-1, 0), 8), ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]))
        return t

    def image(chart: Chart) -> Image:
        return Image(io.BytesIO(chart.png), width=17 * cm, height=17 * cm * 2.6 / 7.5)

    story: list[Any] = [Paragraph(esc(data.agency.upper()), agency), Paragraph(esc(data.tenant), h1),
                        Paragraph(esc(f"Monthly report · {data.period} · {data.timezone}"), body),
                        Spacer(1, 0.4 * cm), Paragraph("Objectives", h2)]
    if data.kpis:
        story.append(table(["Objective", "KPI", "Baseline", "Now", "Target", "Progress", "On track"], [
            [k.title, k.metric, _metric_value(k.baseline, k.metric), _metric_value(k.current, k.metric),
             _metric_value(k.target, k.metric), _percent(k.progress), "yes" if k.on_track else "no"]
            for k in data.kpis]))
        story += [image(c) for c in data.charts if c.key.startswith("kpi-")]
    else:
        story.append(Paragraph("No strategy with objectives was in force over this period.", body))
    e = data.engagement
    story += [Paragraph("Audience and engagement", h2),
              Paragraph(esc(f"Engagement rate over the period: {_percent(e['rate'])} "
                            f"({_number(e['engagements'])} engagements)."), body)]
    if data.followers:
        story.append(table(["Channel", "Followers at start", "At end", "Growth", "Engagement rate"], [
            [f["channel"], _number(f["start"]), _number(f["end"]), _number(f["growth"]),
             _percent(f["engagement_rate"])] for f in data.followers]))
    story += [image(c) for c in data.charts if not c.key.startswith("kpi-")]
    story.append(Paragraph("Top posts", h2))
    story.append(table(["Post", "Channels", "Engagements", "Rate"], [
        [p["body"][:140], ", ".join(p["channels"]), _number(p["engagements"]), _percent(p["engagement_rate"])]
        for p in data.top_posts]) if data.top_posts else Paragraph("No post was published in this period.", body))
    story.append(Paragraph("Top hashtags", h2))
    story.append(table(["Hashtag", "Posts", "Engagements"], [
        [t["tag"], t["posts"], _number(t["engagements"])] for t in data.top_hashtags])
        if data.top_hashtags else Paragraph("No hashtag in this period's posts.", body))
    m = data.moderation
    response = "\u2013" if m["median_response_minutes"] is None else f"{m['median_response_minutes']} min"
    story += [Paragraph("Moderation", h2), Paragraph(esc(
        f"{m['received']} interactions received, {m['answered']} answered; median response time {response}; "
        f"{m['breached']} past the response target."), body)]
    if m["by_kind"]:
        story.append(table(["Kind", "Received"], [[k, n] for k, n in m["by_kind"].items()]))
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, title=f"{data.tenant} — {data.period}", author=data.agency,
                            leftMargin=2 * cm, rightMargin=2 * cm, topMargin=1.5 * cm, bottomMargin=1.5 * cm)
    doc.build(story)
    return out.getvalue()


@dataclass(frozen=True)
class RenderedFile:
    format: str
    media_type: str
    content: bytes

    def describe(self) -> dict[str, Any]:
        return {"size": len(self.content), "sha256": hashlib.sha256(self.content).hexdigest(),
                "media_type": self.media_type}


def render(data: ReportData) -> list[RenderedFile]:
    draw(data)
    return [RenderedFile("html", "text/html; charset=utf-8", render_html(data).encode()),
            RenderedFile("pdf", "application/pdf", render_pdf(data))]
