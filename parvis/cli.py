"""The `parvis` command line: one image, one command per process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from parvis.settings import Settings

T = TypeVar("T")
app = typer.Typer(help="Parvis: the backend of community-management agencies.", no_args_is_help=True)
projections_app = typer.Typer(help="Read models: status and blue/green rebuilds.", no_args_is_help=True)
agency_app = typer.Typer(help="Agencies.", no_args_is_help=True)
app.add_typer(projections_app, name="projections")
app.add_typer(agency_app, name="agency")
hooks_app = typer.Typer(help="Inbound webhooks.", no_args_is_help=True)
app.add_typer(hooks_app, name="hooks")
audit_app = typer.Typer(help="Audit: verify, export and checkpoint the tenants' histories.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
secrets_app = typer.Typer(help="The master secret: rotation.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")
console = Console(stderr=True)
log = logging.getLogger("parvis")


def _logging(settings: Settings) -> None:
    from parvis.observability import configure_logging, configure_tracing

    service = next((a for a in sys.argv[1:] if not a.startswith("-")), "parvis")
    configure_logging(settings, service)
    configure_tracing(settings, service)


@contextmanager
def resolved(settings: Settings | None = None) -> Iterator[Settings]:
    """Settings with database and Redis URLs, starting the embedded servers when none are given."""
    from parvis.embedded import ensure_services

    settings = settings or Settings()
    _logging(settings)
    db, redis, started = ensure_services(settings.data_dir, settings.database_url, settings.redis_url)
    try:
        yield settings.model_copy(update={"database_url": db, "redis_url": redis})
    finally:
        for service in reversed(started):
            service.stop()


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def _migrate(settings: Settings) -> None:
    import asyncpg

    from parvis import wiring
    from projections.store import migrate

    conn = await asyncpg.connect(settings.database_url)
    try:
        # One process migrates at a time, the library's own statements included: every process migrates at
        # start, and concurrent CREATE OR REPLACE FUNCTION fails with "tuple concurrently updated".
        await conn.execute("SELECT pg_advisory_lock(hashtext('parvis.migrate'))")
        await migrate(conn)
        # The library adds its own statements (insert function, type) on first construction.
        await asyncio.to_thread(lambda: wiring.domain(settings, create_table=True).close())
    finally:
        await conn.close()  # releases the session lock


@app.command()
def migrate() -> None:
    """Create or update the event store and the database layout."""
    with resolved() as settings:
        run(_migrate(settings))
        console.print("[green]migrated[/green]")


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to bind (PARVIS_HOST)."),
    port: int = typer.Option(None, help="Port (PARVIS_PORT)."),
) -> None:
    """Serve the GraphQL API (uvicorn)."""
    from parvis import server, wiring

    with resolved() as settings:
        run(_migrate(settings))
        server.serve(
            wiring.asgi_app(settings),
            host=host or settings.host,
            port=port or settings.port,
            log_level=settings.log_level.lower(),
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            keep_alive=settings.keep_alive_seconds,
            max_connections=settings.max_connections,
        )


async def _until_signal(start: Callable[[], Awaitable[None]], stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    await start()


@app.command()
def project() -> None:
    """Run the projection runner (one active per projection; others wait as standby)."""
    from parvis import wiring
    from parvis.observability import serve_metrics
    from projections.runner import Runner

    with resolved() as settings:
        run(_migrate(settings))
        assert settings.database_url
        runner = Runner(settings.database_url, wiring.projections(settings), batch_size=settings.projection_batch_size)
        serve_metrics(settings.projector_metrics_port, "projector")
        run(_until_signal(runner.run, runner.stop))


@app.command()
def work() -> None:
    """Run the background workers (dramatiq) and the event-to-job dispatcher."""
    from parvis.observability import serve_metrics
    from parvis.worker import run_workers

    with resolved() as settings:
        run(_migrate(settings))
        serve_metrics(settings.worker_metrics_port, "worker")
        run_workers(settings)


@app.command()
def dev() -> None:
    """API, projector and workers in one supervised process tree, on the embedded default."""
    from parvis.supervisor import supervise

    os.environ.setdefault("PARVIS_LOG_FORMAT", "console")  # a person reads this terminal (the children too)
    with resolved(Settings(env=os.environ.get("PARVIS_ENV", "development"))) as settings:  # type: ignore[arg-type]
        run(_migrate(settings))
        supervise(settings)


@app.command()
def demo() -> None:
    """Like `dev`, with the demo agency loaded (once) and its logins printed."""
    from parvis.demo import load_demo
    from parvis.supervisor import supervise

    os.environ.setdefault("PARVIS_LOG_FORMAT", "console")  # a person reads this terminal (the children too)
    with resolved(Settings(env=os.environ.get("PARVIS_ENV", "development"))) as settings:  # type: ignore[arg-type]
        run(_migrate(settings))
        logins = load_demo(settings)
        supervise(settings, banner=logins)


@app.command()
def schema() -> None:
    """Print the GraphQL schema (SDL), e.g. to check it against the contract."""
    from api.context import ApiConfig
    from api.schema import build_schema

    typer.echo(build_schema(ApiConfig(development=True)).as_str())


@agency_app.command("create")
def agency_create(
    name: str = typer.Option(..., help="The agency's name."),
    admin_email: str = typer.Option(..., help="E-mail of its first AGENCY_ADMIN."),
    admin_password: str = typer.Option(..., help="Initial password (10 characters or more)."),
) -> None:
    """Register an agency with its first administrator."""
    from domain.errors import DomainError
    from parvis import wiring

    with resolved() as settings:
        run(_migrate(settings))
        parvis = wiring.domain(settings)
        try:
            outcome = parvis.register_agency(name, admin_email, admin_password)
        except DomainError as exc:
            console.print(f"[red]{'.'.join(exc.field or ())}: {exc.message}[/red]")
            raise typer.Exit(2) from None
        finally:
            parvis.close()
        agency_key, user_id = outcome.value
        typer.echo(f"agency {agency_key} created; admin user {user_id}")


@hooks_app.command("secret")
def hooks_secret(channel_id: str = typer.Argument(..., help="The channel's id, as the API shows it.")) -> None:
    """Print the URL path and signing secret of a channel's inbound webhook (keep the secret secret)."""
    from api import ids
    from api.errors import ApiError
    from api.hooks import hook_secret
    from parvis import wiring

    try:
        raw = ids.raw(channel_id, "Channel", "channelId")
    except ApiError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from None
    settings = Settings()
    typer.echo(f"POST /hooks/channels/{channel_id}")
    typer.echo(f"secret: {hook_secret(wiring.hook_key(settings), raw)}")


async def _status(settings: Settings) -> list[dict[str, Any]]:
    import asyncpg

    from parvis import wiring
    from projections.runner import tracked
    from projections.store import head_position

    conn = await asyncpg.connect(settings.database_url)
    try:
        head = await head_position(conn)
        out = []
        for projection in wiring.projections(settings):
            state = await tracked(conn, projection)
            rebuilding = await tracked(conn, projection, next_=True)
            out.append(
                {
                    "name": projection.name,
                    "position": state[0] if state else None,
                    "version": f"{state[1] if state else '-'} (code {projection.version})",
                    "lag": head - state[0] if state else None,
                    "rebuilding": f"at {rebuilding[0]}" if rebuilding else "",
                    "head": head,
                }
            )
        return out
    finally:
        await conn.close()


@projections_app.command("status")
def projections_status() -> None:
    """Position, lag and version of every read model."""
    with resolved() as settings:
        run(_migrate(settings))
        rows = run(_status(settings))
    table = Table("projection", "position", "head", "lag", "version", "rebuild")
    for r in rows:
        table.add_row(r["name"], str(r["position"]), str(r["head"]), str(r["lag"]), r["version"], r["rebuilding"])
    Console().print(table)


async def _rebuild(settings: Settings, names: list[str], fresh: bool) -> None:
    import asyncpg

    from parvis import wiring
    from projections.runner import rebuild

    chosen = [p for p in wiring.projections(settings) if p.name in names]
    conns = [await asyncpg.connect(settings.database_url) for _ in chosen]
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
        ) as progress:

            async def one(conn: asyncpg.Connection, projection: Any) -> None:
                task = progress.add_task(f"rebuild {projection.name}", total=None)

                def report(position: int, head: int) -> None:
                    progress.update(task, completed=position, total=max(head, 1))

                await rebuild(conn, projection, batch_size=settings.projection_batch_size, progress=report, fresh=fresh)

            # Side by side, each on its own connection (read models share no table): the database works on one
            # while Python works on another. One after the other, a rebuild took the sum of their waits (bench B6).
            await asyncio.gather(*(one(conn, p) for conn, p in zip(conns, chosen, strict=True)))
    finally:
        for conn in conns:
            await conn.close()


@projections_app.command("rebuild")
def projections_rebuild(
    name: str = typer.Argument(None, help="The projection to rebuild."),
    all_: bool = typer.Option(False, "--all", help="Rebuild every projection."),
    fresh: bool = typer.Option(False, help="Start over instead of resuming an interrupted rebuild."),
) -> None:
    """Rebuild read models blue/green: new tables beside the live ones, switched when caught up."""
    from parvis import wiring

    known = wiring.read_model_names()
    names = known if all_ else [name] if name else []
    if not names or any(n not in known for n in names):
        console.print(f"[red]name one of {', '.join(known)}, or --all[/red]")
        raise typer.Exit(2)
    with resolved() as settings:
        run(_migrate(settings))
        run(_rebuild(settings, names, fresh))
    console.print("[green]rebuilt[/green] " + ", ".join(names))


def _scope_of(value: str) -> str:
    """A tenant's key from its global id (as the API shows it) or from the raw 32-hex key itself."""
    import re

    from api import ids
    from api.errors import ApiError

    if re.fullmatch(r"[0-9a-f]{32}", value):
        return value
    try:
        return ids.raw(value, "Tenant", "tenant")
    except ApiError as exc:
        console.print(f"[red]--tenant: {exc.message}[/red]")
        raise typer.Exit(2) from None


def _checkpoints(settings: Settings) -> Any:
    """The checkpoint store of these settings (a Redis client the caller closes)."""
    import redis.asyncio

    from parvis import wiring
    from projections.checkpoints import Checkpoints

    assert settings.redis_url
    client = redis.asyncio.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10)
    return Checkpoints(client, settings.queue_namespace, wiring.checkpoint_public_key(settings))


async def _verify(settings: Settings, scope: str) -> Any:
    import asyncpg

    from projections.audit import verify_scope

    checkpoints = _checkpoints(settings)
    conn = await asyncpg.connect(settings.database_url)
    try:
        if await conn.fetchval("SELECT 1 FROM read.history_heads WHERE tenant_id = $1", scope) is None:
            return None
        return await verify_scope(conn, scope, as_app=False, checkpoints=checkpoints)
    finally:
        await conn.close()
        await checkpoints.redis.aclose()


@audit_app.command("verify")
def audit_verify(
    tenant: str = typer.Option(..., help="The tenant's id (as the API shows it) or its 32-hex key."),
) -> None:
    """Recompute a tenant's hash chain from the stored events and check its signed checkpoints."""
    scope = _scope_of(tenant)
    with resolved() as settings:
        run(_migrate(settings))
        result = run(_verify(settings, scope))
    if result is None:
        console.print(f"[red]no history for tenant {scope}[/red]")
        raise typer.Exit(2)
    typer.echo(f"tenant: {scope}")
    typer.echo(f"checked events: {result.checked_events}")
    typer.echo(f"head hash: {result.head_hash}")
    typer.echo(f"checkpoints checked: {result.checkpoints_checked}")
    if result.checkpoint_error:
        typer.echo(f"checkpoints: {result.checkpoint_error}")
    if not result.ok:
        typer.echo(f"FAILED: first bad position {result.first_bad_position}")
        raise typer.Exit(1)
    typer.echo("ok")


def _instant(value: str | None, option: str) -> Any:
    """An ISO 8601 instant; one without an offset is UTC."""
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        console.print(f"[red]{option}: not an ISO 8601 date or time: {value!r}[/red]")
        raise typer.Exit(2) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


# The CSV columns, in the order of the JSON Lines records; `data` is JSON, an empty cell is null.
EXPORT_COLUMNS = (
    "seq", "position", "occurred_at", "type", "aggregate_type", "aggregate_id", "version", "actor", "actor_role",
    "on_behalf_of", "reason", "correlation_id", "causation_id", "data", "canonical", "previous_hash", "hash",
)


async def _export(settings: Settings, scope: str, start: Any, end: Any, fmt: str, out: Any) -> tuple[Any, Any]:
    """Write the window; returns it with the last entry written (None when empty)."""
    import csv
    import json

    import asyncpg

    from projections.audit import export_entries, export_window

    conn = await asyncpg.connect(settings.database_url)
    try:
        window = await export_window(conn, scope, start, end)
        header = {
            **window.header(),
            "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None,
        }
        writer = csv.writer(out, lineterminator="\n")
        if fmt == "jsonl":
            out.write(json.dumps(header, separators=(",", ":")) + "\n")
        else:
            out.write("# " + json.dumps(header, separators=(",", ":")) + "\n")
            writer.writerow(EXPORT_COLUMNS)
        last = None
        async for entry in export_entries(conn, window):
            if fmt == "jsonl":
                out.write(json.dumps(entry, separators=(",", ":"), ensure_ascii=False) + "\n")
            else:
                cells = {**entry, "data": json.dumps(entry["data"], separators=(",", ":"), ensure_ascii=False)}
                writer.writerow(["" if cells[c] is None else cells[c] for c in EXPORT_COLUMNS])
            last = entry
        return window, last
    finally:
        await conn.close()


async def _checkpoint_within(settings: Settings, scope: str, low: int, high: int) -> str | None:
    """The newest stored checkpoint document of a scope with low <= seq <= high."""
    from projections.checkpoints import key_of

    checkpoints = _checkpoints(settings)
    try:
        found = await checkpoints.redis.zrange(
            key_of(checkpoints.namespace, scope), high, low, desc=True, byscore=True, offset=0, num=1
        )
    finally:
        await checkpoints.redis.aclose()
    return found[0].decode() if found else None


@audit_app.command("export")
def audit_export(
    tenant: str = typer.Option(..., help="The tenant's id (as the API shows it) or its 32-hex key."),
    from_: str = typer.Option(None, "--from", help="ISO 8601 start (inclusive; UTC without offset). Default: first."),
    to: str = typer.Option(None, "--to", help="ISO 8601 end (exclusive; UTC without offset). Default: now."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv."),
    output: Annotated[Path | None, typer.Option(help="File to write (default: standard output).")] = None,
    with_checkpoint: Annotated[
        Path | None, typer.Option(help="Also write the newest signed checkpoint within the window to this file.")
    ] = None,
) -> None:
    """Export a tenant's history in a time window, with what verifies it offline (parvis/verify_export.py)."""
    if fmt not in ("jsonl", "csv"):
        console.print("[red]--format: jsonl or csv[/red]")
        raise typer.Exit(2)
    scope = _scope_of(tenant)
    start, end = _instant(from_, "--from"), _instant(to, "--to")
    with resolved() as settings:
        run(_migrate(settings))
        if output is None:
            window, last = run(_export(settings, scope, start, end, fmt, sys.stdout))
        else:
            with output.open("w", encoding="utf-8", newline="") as out:
                window, last = run(_export(settings, scope, start, end, fmt, out))
        document = None
        if with_checkpoint is not None and last is not None:
            document = run(_checkpoint_within(settings, scope, window.previous_seq, window.last_seq))
    console.print(f"exported {window.events} events (seq {window.previous_seq + 1} to {window.last_seq})")
    if with_checkpoint is None:
        return
    if document is None:
        console.print(
            "[red]no signed checkpoint falls within the window: run `parvis audit checkpoint`, or export up to "
            "a later time[/red]"
        )
        raise typer.Exit(1)
    with_checkpoint.write_text(document + "\n", encoding="utf-8")


async def _checkpoint(settings: Settings, scope: str | None) -> Any:
    import asyncpg

    from parvis import wiring
    from projections.checkpoints import checkpoint_heads

    checkpoints = _checkpoints(settings)
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await checkpoint_heads(
            conn, checkpoints.redis, checkpoints.namespace, wiring.checkpoint_key(settings), tenant=scope
        )
    finally:
        await conn.close()
        await checkpoints.redis.aclose()


@audit_app.command("checkpoint")
def audit_checkpoint(
    tenant: str = typer.Option(None, help="Only this tenant (its id or 32-hex key). Default: every tenant."),
) -> None:
    """Sign the history heads that moved since their last checkpoint; prints the signed documents."""
    scope = _scope_of(tenant) if tenant else None
    with resolved() as settings:
        run(_migrate(settings))
        done = run(_checkpoint(settings, scope))
    for document in done.signed:
        typer.echo(document)
    if scope and scope in done.unchanged:
        typer.echo(done.latest[scope])
    console.print(f"signed {len(done.signed)} checkpoints; {len(done.unchanged)} heads unchanged")
    if scope and scope not in done.latest and scope not in done.diverged:
        console.print(f"[red]no history for tenant {scope}[/red]")
        raise typer.Exit(2)
    if done.diverged:
        console.print(
            "[red]not signed, the history no longer holds the last checkpoint (run `parvis audit verify`): "
            + ", ".join(done.diverged) + "[/red]"
        )
        raise typer.Exit(1)


@audit_app.command("public-key")
def audit_public_key() -> None:
    """Print the Ed25519 public key that verifies the checkpoints (base64 of the raw 32 bytes)."""
    import base64

    from parvis import wiring

    typer.echo(base64.b64encode(wiring.checkpoint_public_key(Settings())).decode())


def _print_tally(title: str, counts: dict[str, int]) -> None:
    typer.echo(f"{title}: " + (", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"))


def _secrets(settings: Settings, work: Callable[..., T]) -> T:
    """Run a rotation step with the domain (current and previous keys) and a Redis client, closed afterwards."""
    import redis

    from domain.context import Actor, acting_as
    from parvis import wiring

    assert settings.redis_url
    domain = wiring.domain(settings)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=30)
    try:
        with acting_as(Actor(reason="master secret rotation")):
            return work(settings, domain, client)
    finally:
        client.close()
        domain.close()


def _report(verification: Any) -> None:
    _print_tally("under the current key", verification.current.counts)
    _print_tally("still needing a previous key", verification.previous.counts)
    if verification.foreign_checkpoints:
        typer.echo(f"checkpoints signed by no configured key: {verification.foreign_checkpoints} "
                   "(`parvis audit verify` names them)")
    if not verification.done:
        typer.echo("NOT DONE: keep PARVIS_PREVIOUS_SECRET_KEYS, and run `parvis secrets rotate` again")
        raise typer.Exit(1)
    typer.echo("done: the previous keys are no longer needed")


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Seal, wrap and sign again under PARVIS_SECRET_KEY whatever PARVIS_PREVIOUS_SECRET_KEYS sealed, then verify."""
    from parvis import rotation

    with resolved() as settings:
        run(_migrate(settings))
        if not settings.previous_secret_keys:
            console.print("[yellow]PARVIS_PREVIOUS_SECRET_KEYS is empty: only checking the current key[/yellow]")
        _print_tally("rotated", _secrets(settings, rotation.rotate).counts)
        _report(_secrets(settings, rotation.verify))


@secrets_app.command("verify")
def secrets_verify() -> None:
    """Check that PARVIS_SECRET_KEY alone opens every secret, key and checkpoint in force (exit 1 if not)."""
    from parvis import rotation

    with resolved() as settings:
        run(_migrate(settings))
        _report(_secrets(settings, rotation.verify))


if __name__ == "__main__":
    app()
