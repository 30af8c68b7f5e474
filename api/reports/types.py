"""Reports: their state and where their files are downloaded."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import strawberry

from api import ids
from api.access import UserError, inherit_permissions
from api.directory.types import Node
from api.pagination import PageInfo

# The formats a report is made in, and where each is downloaded (see api/reports/download.py).
FORMATS = {"html": "htmlUrl", "pdf": "pdfUrl"}


def file_path(report_gid: str, fmt: str) -> str:
    return f"/reports/{report_gid}/{fmt}"


@inherit_permissions
@strawberry.type
class Report(Node):
    id: strawberry.ID
    period_start: datetime
    period_end: datetime
    status: str = strawberry.field(description="REQUESTED, READY or FAILED.")
    html_url: str | None = strawberry.field(description="GET with the same Authorization header; null until READY.")
    pdf_url: str | None
    created_at: datetime
    ready_at: datetime | None = None
    trigger: str = strawberry.field(default="request", description="monthly (the scheduler) or request.")
    error: str | None = None
    summary: strawberry.scalars.JSON | None = strawberry.field(
        default=None, description="The headline figures of the report (KPIs, followers, engagement rate, inbox)."
    )

    @classmethod
    def from_row(cls, row: Any, base_url: str = "") -> Report:
        gid = ids.encode("Report", row["id"])
        ready = row["status"] == "READY"
        urls = {f: f"{base_url}{file_path(gid, f)}" if ready else None for f in FORMATS}
        summary = row["summary"]
        return cls(
            id=strawberry.ID(gid), period_start=row["period_start"], period_end=row["period_end"],
            status=row["status"], html_url=urls["html"], pdf_url=urls["pdf"], created_at=row["created_at"],
            ready_at=row["ready_at"], trigger=row["trigger"], error=row["error"],
            summary=(json.loads(summary) if isinstance(summary, str) else summary) if ready else None,
        )


@inherit_permissions
@strawberry.type
class ReportEdge:
    cursor: str
    node: Report


@inherit_permissions
@strawberry.type
class ReportConnection:
    edges: list[ReportEdge]
    page_info: PageInfo


@strawberry.input
class RequestReportInput:
    tenant_id: strawberry.ID
    period_start: datetime
    period_end: datetime
    idempotency_key: str | None = None


@inherit_permissions
@strawberry.type
class ReportPayload:
    report: Report | None
    user_errors: list[UserError]
    position: str | None
    consistent: bool
