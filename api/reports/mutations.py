"""`requestReport`: a report over any period, made by the workers like the monthly ones."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.access import actor_of, require, secured
from api.commands import execute
from api.context import Context
from api.directory.mutations import tenant_key_of
from api.reports import queries
from api.reports.types import ReportPayload, RequestReportInput
from domain.app import Outcome
from domain.roles import Permission


@strawberry.type
class ReportsMutation:
    @strawberry.mutation(**secured(Permission.MODERATE))
    async def request_report(self, info: Info[Context, None], input: RequestReportInput) -> ReportPayload:
        ctx = info.context
        key = tenant_key_of(input.tenant_id)
        p = await require(ctx, key, Permission.MODERATE, "requestReport")
        domain = ctx.services.domain

        def command() -> Outcome[str]:
            return domain.request_report(key, input.period_start, input.period_end, requested_by=p.user_id)

        result = await execute(
            ctx, operation="requestReport", actor=actor_of(p, key), idempotency_key=input.idempotency_key,
            input_data={"tenantId": str(input.tenant_id), "periodStart": input.period_start.isoformat(),
                        "periodEnd": input.period_end.isoformat()},
            command=command,
        )
        report = await queries.report(ctx, key, result.value) if result.value and not result.errors else None
        return ReportPayload(report=report, user_errors=result.errors, position=result.position_text,
                             consistent=result.consistent)
