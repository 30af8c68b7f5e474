"""How a mutation runs: idempotency, the domain command in the thread pool, errors, consistency."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from api.access import UserError
from api.context import Context
from api.errors import Forbidden
from domain.app import Outcome
from domain.context import Actor, Receipt, acting_as, answering, receipt_json
from domain.errors import Conflict, DomainError

log = logging.getLogger("parvis.api.commands")
T = TypeVar("T")

_RESERVE = """
INSERT INTO parvis.idempotency (principal, key, operation, input_hash) VALUES ($1, $2, $3, $4)
ON CONFLICT (principal, key) DO NOTHING RETURNING key
"""


@dataclass
class CommandResult(Generic[T]):
    """What a mutation payload is made of."""

    value: T | None
    errors: list[UserError] = field(default_factory=list)
    position: int | None = None
    consistent: bool = True

    @property
    def position_text(self) -> str | None:
        return None if self.position is None else str(self.position)


def user_error(exc: DomainError, prefix: str = "input") -> UserError:
    fields = [prefix, *exc.field] if exc.field else None
    return UserError(code=exc.code, field=fields, message=exc.message)


def input_hash(operation: str, data: Any) -> str:
    blob = json.dumps([operation, data], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


async def execute(
    ctx: Context,
    *,
    operation: str,
    actor: Actor,
    command: Callable[[], Outcome[T]],
    idempotency_key: str | None = None,
    input_data: Any = None,
    retry_on_conflict: bool = True,
) -> CommandResult[T]:
    """Run a domain command once per idempotency key and wait for the read models to include it."""
    services = ctx.services
    principal = ctx.require_principal()
    digest = input_hash(operation, input_data)
    if idempotency_key is not None:
        # The idempotency record takes a connection of the pool that the request's read session (opened by the
        # access checks) holds one of: give that one back first, or as many keyed mutations at once as the pool has
        # connections would each hold one and wait for another until the request time limit. Reads after the
        # command open a new session.
        await ctx.close_session()
        replay = await _reserve(ctx, principal.user_id, idempotency_key, operation, digest)
        if replay is not None:
            await ctx.wrote(replay.position)
            return replay
    result: CommandResult[T]
    attempts = 2 if retry_on_conflict else 1
    # The command's events and its result under the key are stored in one transaction (parvis.store).
    receipt = Receipt(principal.user_id, idempotency_key) if idempotency_key is not None else None
    for attempt in range(attempts):
        try:
            with acting_as(replace(actor, traceparent=ctx.traceparent) if ctx.traceparent else actor), \
                    answering(receipt):
                outcome = await services.call(command)
            result = CommandResult(outcome.value, position=outcome.position)
            break
        except Conflict as exc:
            if attempt + 1 < attempts:
                continue
            result = CommandResult(None, [user_error(exc)])
        except DomainError as exc:
            if exc.code == "FORBIDDEN":
                # A role refusal the domain found (e.g. an approval step): an auth error, not a business one.
                if idempotency_key is not None:
                    await _release(ctx, principal.user_id, idempotency_key)
                raise Forbidden(exc.message) from None
            result = CommandResult(None, [user_error(exc)])
            break
    if idempotency_key is not None:
        await _complete(ctx, principal.user_id, idempotency_key, result)
    await ctx.wrote(result.position)
    result.consistent = await services.live.wait_for(result.position, services.config.consistency_timeout)
    return result


async def _reserve(ctx: Context, principal: str, key: str, operation: str, digest: str) -> CommandResult[Any] | None:
    """Claim an idempotency key, or return the first result recorded under it."""
    async with ctx.services.pool.acquire() as conn:
        if await conn.fetchval(_RESERVE, principal, key, operation, digest) is not None:
            return None
        # An attempt is answered 503 at the request time limit (RequestTimeout): a reservation older than that has
        # no attempt left to record its result (its process died, or the limit cut it). 0 (no limit): a minute.
        row = await conn.fetchrow(
            "SELECT operation, input_hash, result, position, now() - created_at > make_interval(secs => $3) AS stale "
            "FROM parvis.idempotency WHERE principal = $1 AND key = $2",
            principal,
            key,
            ctx.services.config.request_timeout or 60.0,
        )
    assert row is not None
    if row["operation"] != operation or row["input_hash"] != digest:
        return CommandResult(
            None,
            [
                UserError(
                    code="CONFLICT",
                    field=["input", "idempotencyKey"],
                    message="this idempotency key was used with another input",
                )
            ],
        )
    if row["result"] is None:
        if row["stale"]:
            return None  # the first attempt died before finishing: run it now
        return CommandResult(
            None,
            [
                UserError(
                    code="CONFLICT",
                    field=["input", "idempotencyKey"],
                    message="a request with this idempotency key is still running",
                )
            ],
        )
    stored = json.loads(row["result"])
    errors = [UserError(code=e["code"], field=e["field"], message=e["message"]) for e in stored["errors"]]
    value = stored["value"]
    if isinstance(value, list):
        value = tuple(value)
    return CommandResult(value, errors, row["position"])


async def _release(ctx: Context, principal: str, key: str) -> None:
    async with ctx.services.pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM parvis.idempotency WHERE principal = $1 AND key = $2 AND result IS NULL", principal, key
        )


async def _complete(ctx: Context, principal: str, key: str, result: CommandResult[Any]) -> None:
    errors = [{"code": e.code, "field": e.field, "message": e.message} for e in result.errors]
    async with ctx.services.pool.acquire() as conn:
        await conn.execute(
            "UPDATE parvis.idempotency SET result = $3::jsonb, position = $4 WHERE principal = $1 AND key = $2",
            principal,
            key,
            receipt_json(result.value, errors),
            result.position,
        )
