"""A tenant's reports, newest first."""

from __future__ import annotations

from api.context import Context
from api.pagination import Keyset
from api.reports.types import Report, ReportConnection, ReportEdge


def base_url(ctx: Context) -> str:
    """Where this API is reached, for absolute download addresses."""
    return str(ctx.request.base_url).rstrip("/")


_REPORTS = Keyset("read.reports", descending=True)


async def reports(ctx: Context, key: str, first: int | None, after: str | None) -> ReportConnection:
    rows, info = await _REPORTS.page(ctx.db, ["tenant_id = $1"], [key], first, after)
    base = base_url(ctx)
    return ReportConnection(
        edges=[ReportEdge(cursor=_REPORTS.cursor(r), node=Report.from_row(r, base)) for r in rows], page_info=info
    )


async def report(ctx: Context, key: str, report_id: str) -> Report | None:
    row = await ctx.db.fetchrow("SELECT * FROM read.reports WHERE tenant_id = $1 AND id = $2", key, report_id)
    return Report.from_row(row, base_url(ctx)) if row else None
