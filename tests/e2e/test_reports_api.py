"""Reports end to end: requested over HTTP, made by a real worker, downloaded by those who may see the tenant."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pypdfium2

from tests.support import PASSWORD, Client

CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } } }"
GRANT = "mutation($i: GrantMembershipInput!) { grantMembership(input: $i) { userErrors { message } } }"
REVISE = "mutation($i: ReviseStrategyInput!) { reviseStrategy(input: $i) { userErrors { field message } } }"
RECORD = "mutation($i: RecordMetricsInput!) { recordMetrics(input: $i) { accepted userErrors { message } } }"
REQUEST = """mutation($i: RequestReportInput!) { requestReport(input: $i) {
  report { id status htmlUrl pdfUrl periodStart periodEnd } userErrors { code field message } consistent } }"""
REPORT = """query($id: ID!) { node(id: $id) { ... on Report { id status htmlUrl pdfUrl error summary } } }"""
LIST = """query($id: ID!) { tenant(id: $id) { reports(first: 5) { edges { node { id status } } } } }"""


def tenant_with_objectives(admin: Client, name: str) -> tuple[str, str]:
    tid = admin.data(CREATE, {"i": {"name": name, "kind": "NGO", "timezone": "Europe/Paris"}})[
        "createTenant"]["tenant"]["id"]
    channel = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": "@rapport"}})[
        "connectChannel"]["channel"]["id"]
    deadline = (datetime.now(UTC) + timedelta(days=60)).isoformat()
    assert admin.data(REVISE, {"i": {"tenantId": tid, "reason": "objectifs", "personas": [], "editorialLine": {},
                                     "objectives": [
        {"title": "Abonnés", "intent": "AWARENESS", "metric": "followers", "baseline": 100, "target": 200},
        {"title": "Dons", "intent": "ACTION", "metric": "donations", "target": 500, "deadline": deadline},
    ]}})["reviseStrategy"]["userErrors"] == []
    now = datetime.now(UTC)
    observations = [{"channelId": channel, "metric": "donations", "value": 20 * d,
                     "at": (now - timedelta(days=d)).isoformat()} for d in range(1, 6)]
    assert admin.data(RECORD, {"i": {"tenantId": tid, "observations": observations}})["recordMetrics"]["accepted"] == 5
    return tid, channel


def user(admin: Client, tenant_id: str, role: str) -> Client:
    email = f"{role.lower()}-{uuid.uuid4().hex[:6]}@client.test"
    assert admin.data(GRANT, {"i": {"email": email, "role": role, "tenantId": tenant_id,
                                    "password": PASSWORD}})["grantMembership"]["userErrors"] == []
    return Client(admin.url).login(email)


def get(url: str, client: Client | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {client.token}"} if client else {}
    return httpx.get(url, headers=headers, timeout=30)


def test_a_requested_report_is_made_by_the_workers_and_only_the_tenants_users_download_it(
    admin: Client, worker: Any
) -> None:
    tid, _ = tenant_with_objectives(admin, f"Rapport {uuid.uuid4().hex[:4]}")
    other, _ = tenant_with_objectives(admin, f"Voisin {uuid.uuid4().hex[:4]}")
    now = datetime.now(UTC)
    # The period runs to the end of today, so that the strategy revised a moment ago is in force at its end.
    asked = admin.data(REQUEST, {"i": {"tenantId": tid, "periodStart": (now - timedelta(days=7)).isoformat(),
                                       "periodEnd": (now + timedelta(hours=1)).isoformat()}})["requestReport"]
    assert asked["userErrors"] == []
    assert asked["consistent"] is True
    report = asked["report"]
    assert (report["status"], report["htmlUrl"], report["pdfUrl"]) == ("REQUESTED", None, None)

    deadline = time.monotonic() + 90
    while (node := admin.data(REPORT, {"id": report["id"]})["node"])["status"] == "REQUESTED":
        assert time.monotonic() < deadline, "the report was not made within 90 s"
        time.sleep(0.5)
    assert node["status"] == "READY", node["error"]
    assert [k["title"] for k in node["summary"]["kpis"]] == ["Abonnés", "Dons"]
    # Donations since the objective began (the revision, a moment ago): none of the five past days count.
    assert node["summary"]["kpis"][1]["current"] is None
    assert [e["node"]["id"] for e in admin.data(LIST, {"id": tid})["tenant"]["reports"]["edges"]] == [report["id"]]

    viewer = user(admin, tid, "CLIENT_VIEWER")
    html = get(node["htmlUrl"], viewer)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in html.headers["content-security-policy"]
    assert len(re.findall(r'<figure class="chart kpi-chart"', html.text)) == 2  # one chart per KPI
    pdf = get(node["pdfUrl"], admin)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert len(pypdfium2.PdfDocument(pdf.content)) >= 1

    # Anyone else gets 404: a user of another tenant of the same agency, no token, a bad token, a forged id.
    stranger = user(admin, other, "CLIENT_ADMIN")
    for client in (stranger, None):
        assert get(node["htmlUrl"], client).status_code == 404
        assert get(node["pdfUrl"], client).status_code == 404
    assert httpx.get(node["pdfUrl"], headers={"authorization": "Bearer nope"}).status_code == 404
    assert get(node["pdfUrl"].replace(report["id"], "UmVwb3J0Om5vcGU"), admin).status_code == 404
    assert get(node["pdfUrl"].rsplit("/", 1)[0] + "/docx", admin).status_code == 404
    assert stranger.data(REPORT, {"id": report["id"]})["node"] is None


def test_a_bad_request_is_refused_naming_the_field_and_records_nothing(admin: Client) -> None:
    tid, _ = tenant_with_objectives(admin, f"Refus {uuid.uuid4().hex[:4]}")
    now = datetime.now(UTC)
    for start, end, field in (
        (now - timedelta(days=1), now - timedelta(days=2), "periodEnd"),
        (now + timedelta(days=1), now + timedelta(days=2), "periodStart"),
        (now - timedelta(days=400), now, "periodEnd"),
    ):
        refused = admin.data(REQUEST, {"i": {"tenantId": tid, "periodStart": start.isoformat(),
                                             "periodEnd": end.isoformat()}})["requestReport"]
        assert refused["report"] is None
        assert [(e["code"], e["field"]) for e in refused["userErrors"]] == [("BAD_USER_INPUT", ["input", field])]
    assert admin.data(LIST, {"id": tid})["tenant"]["reports"]["edges"] == []
    viewer = user(admin, tid, "CLIENT_VIEWER")
    codes = viewer.error_codes(REQUEST, {"i": {"tenantId": tid, "periodStart": (now - timedelta(days=2)).isoformat(),
                                               "periodEnd": now.isoformat()}})
    assert codes == ["FORBIDDEN"]
