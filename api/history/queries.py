"""Reading a tenant's history and verifying its hash chain."""

from __future__ import annotations

from typing import Any

from strawberry.types import Info

from api import ids
from api.context import Context
from api.errors import BadInput
from api.history.types import HistoryConnection, HistoryEdge, HistoryEvent, HistoryFilter, HistoryVerification
from api.inputs import instant
from api.pagination import PageInfo, decode_cursor, encode_cursor, page_size
from projections.audit import verify_recorded


async def tenant_history(
    info: Info[Context, None], key: str, first: int | None, after: str | None, flt: HistoryFilter | None,
    timezone: str = "UTC",
) -> HistoryConnection:
    """A page of the tenant's events in order (a filter time without an offset is the tenant's)."""
    ctx = info.context
    limit = page_size(first)
    where = ["tenant_id = $1"]
    args: list[Any] = [key]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    cursor = decode_cursor(after, "seq")
    if cursor:
        where.append(f"seq > {arg(cursor[0])}")
    if flt is not None:
        if flt.types:
            where.append(f"type = ANY({arg(list(flt.types))})")
        if flt.aggregate_id:
            _, raw = ids.decode(flt.aggregate_id, field="filter.aggregateId")
            where.append(f"aggregate_id = {arg(raw)}")
        if flt.actor:
            where.append(f"actor = {arg(flt.actor)}")
        start, end = (instant(t, timezone) if t else None for t in (flt.from_, flt.to))
        if start and end and start > end:
            raise BadInput("filter.from must not be after filter.to")
        if start:
            where.append(f"occurred_at >= {arg(start)}")
        if end:
            where.append(f"occurred_at < {arg(end)}")
    rows = await ctx.db.fetch(
        f"SELECT * FROM read.history WHERE {' AND '.join(where)} ORDER BY seq LIMIT {arg(limit + 1)}", *args
    )
    edges = [HistoryEdge(cursor=encode_cursor(r["seq"]), node=HistoryEvent.from_row(r)) for r in rows[:limit]]
    return HistoryConnection(
        edges=edges, page_info=PageInfo(has_next_page=len(rows) > limit, end_cursor=edges[-1].cursor if edges else None)
    )


async def verify_history(info: Info[Context, None], key: str) -> HistoryVerification:
    ctx = info.context
    events = await ctx.db.fetch("SELECT * FROM parvis.scope_events($1)", key)
    history = await ctx.db.fetch("SELECT seq, position, hash FROM read.history WHERE tenant_id = $1 ORDER BY seq", key)
    result = await verify_recorded(events, history, key, ctx.services.checkpoints)
    return HistoryVerification(
        ok=result.ok,
        checked_events=result.checked_events,
        head_hash=result.head_hash,
        first_bad_position=None if result.first_bad_position is None else str(result.first_bad_position),
        checkpoints_checked=result.checkpoints_checked,
        checkpoint_error=result.checkpoint_error,
    )
