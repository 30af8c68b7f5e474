"""Reports: a tenant's figures over a period, made by the workers as HTML and PDF files.

A report is requested (monthly by the scheduler, or on demand), then generated once: its files are stored
outside the event store (they are large and derived), and the `Generated` event records their digests, so an
auditor can tell a file is the one that was produced."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from eventsourcing.domain import event

from domain.base import ParvisAggregate, aggregate_id, kind_of, new_key
from domain.errors import InvalidInput, InvalidTransition, NotFound

if TYPE_CHECKING:
    from domain.app import Outcome

MAX_PERIOD = timedelta(days=366)


class ReportStatus(str, Enum):
    REQUESTED = "REQUESTED"
    READY = "READY"
    FAILED = "FAILED"


class Report(ParvisAggregate):
    """One report of one tenant over [period_start, period_end)."""

    @staticmethod
    def create_id(tenant_key: str, report_key: str) -> str:
        return aggregate_id(tenant_key, "report", report_key)

    @staticmethod
    def monthly_key(month: date) -> str:
        """The monthly report of a month has one id: two schedulers asking for it collide instead of doubling."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"parvis:report:{month:%Y-%m}").hex

    class Requested(ParvisAggregate.Created):
        tenant_key: str
        period_start: datetime
        period_end: datetime
        trigger: str
        requested_by: str
        report_key: str

    @event(Requested)
    def __init__(
        self, tenant_key: str, period_start: datetime, period_end: datetime, trigger: str, requested_by: str,
        report_key: str,
    ) -> None:
        self.tenant_key = tenant_key
        self.period_start = period_start
        self.period_end = period_end
        self.trigger = trigger
        self.requested_by = requested_by
        self.status = ReportStatus.REQUESTED.value
        self.files: dict[str, dict[str, Any]] = {}
        self.error: str | None = None

    @event("Generated")
    def generated(self, files: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
        """`files`: per format (html, pdf), its size and sha256; `summary`: the headline figures."""
        self.status = ReportStatus.READY.value
        self.files = files
        self.error = None

    @event("Failed")
    def failed(self, reason: str) -> None:
        self.status = ReportStatus.FAILED.value
        self.error = reason


def last_month(now: datetime, timezone: str) -> tuple[date, datetime, datetime]:
    """The last complete month in the tenant's time zone: (its first day, start, end) as aware instants."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone).date()
    first = local.replace(day=1)
    previous = (first - timedelta(days=1)).replace(day=1)
    return previous, datetime.combine(previous, time(), zone), datetime.combine(first, time(), zone)


class ReportCommands:
    """Mixed into the application service (domain.app.Parvis)."""

    commit: Callable[..., int | None]
    done: Callable[..., Outcome[Any]]
    exists: Callable[[str], bool]
    tenant: Callable[..., Any]
    now: Callable[[], datetime]
    load: Callable[..., Any]

    def request_report(
        self, tenant_key: str, period_start: datetime, period_end: datetime, requested_by: str,
        trigger: str = "request",
    ) -> Outcome[str]:
        """Ask for a report over [period_start, period_end); the workers make it."""

        self.tenant(tenant_key).check_not_offboarded()
        for field, value in (("periodStart", period_start), ("periodEnd", period_end)):
            if value.tzinfo is None or value.utcoffset() is None:
                raise InvalidInput(f"{field} must carry an offset", field)
        if period_end <= period_start:
            raise InvalidInput("periodEnd must be after periodStart", "periodEnd")
        if period_end - period_start > MAX_PERIOD:
            raise InvalidInput(f"a report covers at most {MAX_PERIOD.days} days", "periodEnd")
        if period_start >= self.now():
            raise InvalidInput("periodStart must be in the past", "periodStart")
        report = Report(tenant_key=tenant_key, period_start=period_start, period_end=period_end, trigger=trigger,
                        requested_by=requested_by, report_key=new_key())
        return self.done(report.id, report)

    def request_monthly_report(self, tenant_key: str) -> Outcome[str] | None:
        """The report of the tenant's last complete month, once; None when it exists or the tenant is not active."""

        tenant = self.tenant(tenant_key)
        if tenant.status != "ACTIVE":
            return None
        month, start, end = last_month(self.now(), tenant.timezone)
        key = Report.monthly_key(month)
        if self.exists(Report.create_id(tenant_key, key)):
            return None
        report = Report(tenant_key=tenant_key, period_start=start, period_end=end, trigger="monthly",
                        requested_by="system", report_key=key)
        return self.done(report.id, report)

    def report(self, report_id: str, field: str = "reportId") -> Report:
        if kind_of(report_id) != "report":
            raise NotFound(f"{field} does not name an existing report", field)
        report: Report = self.load(report_id, Report, field)
        return report

    def record_report_generated(
        self, report_id: str, files: dict[str, dict[str, Any]], summary: dict[str, Any]
    ) -> Outcome[str] | None:
        """Once: a report generated again (a redelivered job) records nothing new."""

        report = self.report(report_id)
        if report.status == ReportStatus.READY.value:
            return None
        if set(files) != {"html", "pdf"}:
            raise InvalidInput("a report has an html and a pdf file", "files")
        report.generated(files=files, summary=summary)
        return self.done(report.id, report)

    def record_report_failed(self, report_id: str, reason: str) -> Outcome[str] | None:

        report = self.report(report_id)
        if report.status != ReportStatus.REQUESTED.value:
            raise InvalidTransition(f"the report is {report.status.lower()}", "reportId")
        report.failed(reason=reason[:500])
        return self.done(report.id, report)
