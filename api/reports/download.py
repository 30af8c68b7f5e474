"""`GET /reports/{id}/{html|pdf}`: a report's file, for the users who may see its tenant.

Anyone else, signed in or not, gets 404 (the report's existence is not revealed); the row-level security
of `parvis.report_files` decides as well as the check here."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from api import ids
from api.access import visible_tenant
from api.context import Context
from api.errors import ApiError
from api.reports.types import FORMATS

_NOT_FOUND = PlainTextResponse("not found", status_code=404)
# The HTML report is a document, never a page that runs anything: inline styles and its own SVG only.
_HTML_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


async def download(ctx: Context, request: Request) -> Response:
    fmt = request.path_params["format"]
    if fmt not in FORMATS or ctx.principal is None:
        return _NOT_FOUND
    try:
        raw = ids.raw(request.path_params["report_id"], "Report")
    except ApiError:
        return _NOT_FOUND
    key = ids.scope(raw)
    try:
        if not await visible_tenant(ctx, key):
            return _NOT_FOUND
        row = await ctx.db.fetchrow(
            "SELECT media_type, content, sha256 FROM parvis.report_files "
            "WHERE tenant_id = $1 AND report_id = $2 AND format = $3", key, raw, fmt)
    finally:
        await ctx.close()
    if row is None:
        return _NOT_FOUND
    name = f"report-{raw.rsplit('/', 1)[-1][:12]}.{fmt}"
    headers = {
        "Content-Disposition": f'{"inline" if fmt == "html" else "attachment"}; filename="{name}"',
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
        "ETag": f'"{row["sha256"]}"',
    }
    if fmt == "html":
        headers["Content-Security-Policy"] = _HTML_POLICY
    return Response(bytes(row["content"]), media_type=row["media_type"], headers=headers)
