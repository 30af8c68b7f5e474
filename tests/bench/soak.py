"""The soak: minutes of steady mixed load on the whole stack, then a verdict on errors, memory and lag.

    python -m tests.bench --soak [--minutes 10] [--output soak-results.json]

The API, the projector and the workers run as separate processes (`tests.bench.measures.stack`) on a fresh
database with a modest store (tenants of `tests.bench.data`). A separate load process (`tests.bench.mixed`) then
runs for the whole time at fixed rates (RATES, about half of two cores): the posts' pipeline over GraphQL (draft,
submit, approve as a community manager, schedule a few seconds ahead, which the workers then publish), moderation
decisions, tenant dashboards, `ingestInteractions` and signed webhook deliveries, live subscriptions over
graphql-transport-ws (`postUpdates`, `moderationQueue`, `history`), and B4's lag probe (domain commands in the
other tenants, timed until every read model has them). Meanwhile the RSS of the three processes and the read
models' backlog are sampled every few seconds.

The verdict (every row's `met`; the command exits 1 otherwise):
- no error: no transport failure, no HTTP status but 200, no GraphQL error of any code, no subscription that
  fails, ends or goes `stall_after` seconds without a message, no job run in error, given up or handed over twice,
  no publication failure, every process still running at the end; and every kind of operation made progress;
- memory flat: for each process, the highest RSS in the last quarter of the time after the warm-up is at most
  FLAT times the highest in the first quarter;
- lag bounded: p99 of the probe's lag at most LAG_BOUND_MS, and no upward trend: p99 of the last quarter at most
  TREND times that of the first quarter, or under TREND_FLOOR_MS (below it, the ratio of two small figures is
  noise).

Runs shorter than two minutes (`make test` runs one of 25 s) seed less, sample more often and wait less for a
silent subscription.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tests.bench.data import Generator, Mix, Seeded, Staff, caught_up, settings_for
from tests.bench.load import percentile
from tests.bench.measures import MB, Sampler, Stack, row, stack
from tests.support import PASSWORD, ROOT, Client, free_port

# Operations per second, whatever the run's length (draft to schedule is one post's pipeline).
RATES = {"draftPost": 3.0, "submitPost": 3.0, "approvePost": 3.0, "schedulePost": 3.0, "decideInteraction": 3.0,
         "dashboard": 6.0, "ingestInteractions": 1.0, "webhook": 1.0}
INGEST_ITEMS, WEBHOOK_ITEMS = 10, 5  # interactions per call
PROBE_RATE = 5.0  # lag-probe commands per second
POOL = 5
FLAT = 1.2
LAG_BOUND_MS = 500.0
TREND, TREND_FLOOR_MS = 2.0, 100.0
WHAT = {
    "draftPost": "draftPost (GraphQL, agency admin)",
    "submitPost": "submitPost of the drafts",
    "approvePost": "approvePost of the submitted, as the community manager",
    "schedulePost": "schedulePost of the approved, {ahead:.0f} s ahead (the workers publish them)",
    "decideInteraction": "decideInteraction on NEW interactions (approve, reply, hide, dismiss)",
    "dashboard": "tenant dashboard query (calendar, queue page, KPIs)",
    "ingestInteractions": f"ingestInteractions, {INGEST_ITEMS} items per call",
    "webhook": f"signed webhook POST /hooks/channels/…, {WEBHOOK_ITEMS} items per call",
}
CHANNELS = "query($id: ID!) { tenant(id: $id) { channels { id } } }"
POLICY = """mutation($input: SetApprovalPolicyInput!) {
  setApprovalPolicy(input: $input) { userErrors { code message } } }"""


@dataclass(frozen=True)
class Plan:
    """How long and on what: the store, the tenants the load acts in, sampling and patience."""

    seconds: float
    tenants: int  # seeded tenants; the first `active` take the GraphQL load, the others the lag probe
    events: int  # about this many events each
    active: int
    histories: int  # active tenants whose `history` is also followed
    warmup: float  # seconds left out of the memory and lag trends
    interval: float  # seconds between samples of memory and backlog
    stall_after: float  # a subscription this long without a message has stopped
    schedule_ahead: float  # seconds between scheduling a post and its time
    drain: float  # seconds to wait for the workers to finish the store's own jobs before the load

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        """(subscription field, active tenant's index)."""
        return ([(f, i) for i in range(self.active) for f in ("postUpdates", "moderationQueue")]
                + [("history", i) for i in range(self.histories)])


def plan(minutes: float) -> Plan:
    seconds = minutes * 60
    if seconds < 120:
        return Plan(seconds=seconds, tenants=3, events=150, active=2, histories=1, warmup=min(5.0, seconds / 5),
                    interval=1.0, stall_after=10.0, schedule_ahead=4.0, drain=60)
    return Plan(seconds=seconds, tenants=12, events=500, active=4, histories=2, warmup=min(60.0, seconds / 5),
                interval=5.0, stall_after=20.0, schedule_ahead=30.0, drain=300)


def soak(database_url: str, redis_url: str, minutes: float, console: Console) -> dict[str, Any]:
    """Seed, run the load, judge; the rows of the table and every raw figure."""
    p = plan(minutes)
    metrics_port = free_port()
    # Pools of POOL connections per process: the soak's rates need no more, and the stack must fit beside other
    # users of the server (the test session in `make test`) in PostgreSQL's default 100 connections.
    with stack(database_url, redis_url, worker=True, PARVIS_WORKER_METRICS_PORT=str(metrics_port),
               PARVIS_DB_POOL_SIZE=str(POOL)) as parvis:
        with Generator(settings_for(database_url, redis_url)) as gen:
            spec = prepare(gen, parvis, p, console)
        figures = measure(parvis, spec, p, metrics_port, console)
    rows = judge(p, figures)
    return {"plan": asdict(p), "rates": RATES, "probe_rate": PROBE_RATE, "rows": rows,
            "ok": all(r["met"] for r in rows), "figures": figures}


# ---------------------------------------------------------------------------------------------- set-up
def prepare(gen: Generator, parvis: Stack, p: Plan, console: Console) -> dict[str, Any]:
    """Seed the store, sign in, set the active tenants' approval policy, wait for the workers; the load's spec."""
    from api import ids
    from api.hooks import hook_secret
    from domain.context import Actor, acting_as
    from parvis import wiring

    started = time.monotonic()
    staff: Staff = gen.agency("Soak")
    with acting_as(Actor(id=staff.admin_id, role="AGENCY_ADMIN")):
        gen.app.change_password(staff.reviewer_id, PASSWORD)  # the community manager approves and decides
    with progress(console) as bar:
        task = bar.add_task(f"{p.tenants} tenants of ~{p.events} events", total=p.tenants)
        seeded: list[Seeded] = gen.tenants(staff, p.tenants, Mix.of(p.events), "Soak",
                                           progress=lambda n: bar.update(task, completed=n))
    caught_up(parvis.database_url)
    admin = Client(parvis.url).login(staff.admin_email)
    reviewer = Client(parvis.url).login(staff.reviewer_email)
    key = wiring.hook_key(settings_for(parvis.database_url, parvis.redis_url))
    tenants = []
    for t in seeded:
        channels = [c["id"] for c in admin.data(CHANNELS, {"id": t.tenant_id})["tenant"]["channels"]]
        hooks = [{"channel": c, "secret": hook_secret(key, ids.raw(c, "Channel"))} for c in channels]
        tenants.append({"id": t.tenant_id, "key": t.tenant_key, "channels": channels, "hooks": hooks})
    active, passive = tenants[:p.active], tenants[p.active:]
    for t in active:  # one internal approval, no client step: the pipeline ends in SCHEDULED
        answer = admin.data(POLICY, {"input": {"tenantId": t["id"], "internalApprovals": 1, "clientApproval": False}})
        assert not answer["setApprovalPolicy"]["userErrors"], answer
    with progress(console) as bar:
        bar.add_task("workers finishing the store's own jobs", total=None)
        if not drained(parvis.database_url, p.drain):
            console.log(f"the workers still had due jobs after {p.drain:.0f} s: the load starts anyway")
    caught_up(parvis.database_url)
    console.log(f"{p.tenants} tenants seeded, signed in and their jobs done in {time.monotonic() - started:.0f} s")
    return {
        "url": parvis.url, "admin": admin.token, "reviewer": reviewer.token, "rates": RATES,
        "tenants": active, "ingest_items": INGEST_ITEMS, "webhook_items": WEBHOOK_ITEMS,
        "schedule_ahead": p.schedule_ahead, "stall_after": p.stall_after,
        "subscriptions": [{"operation": f, "tenant": active[i]["id"]} for f, i in p.subscriptions],
        "probe": {"rate": PROBE_RATE, "author": staff.admin_id, "reviewer": staff.reviewer_id,
                  "tenants": [{"key": t["key"], "channel": ids.raw(t["channels"][0], "Channel")} for t in passive]},
    }


def drained(database_url: str, within: float) -> bool:
    """Wait (bounded) until the dispatcher has every event and no job is due; False if it did not happen in time."""
    deadline = time.monotonic() + within
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                found = conn.execute(
                    "SELECT (SELECT position FROM parvis.tracking WHERE projection = 'dispatcher') "
                    ">= (SELECT coalesce(max(notification_id), 0) FROM public.parvis_events) AND NOT EXISTS "
                    "(SELECT FROM parvis.jobs WHERE status = 'pending' AND due_at <= now())").fetchone()
            except psycopg.errors.UndefinedTable:
                found = None  # the dispatcher has not made its outbox yet
            if found and found[0]:
                return True
            time.sleep(0.5)
    return False


def progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console,
                    transient=True)


# ---------------------------------------------------------------------------------------------- the run
def measure(parvis: Stack, spec: dict[str, Any], p: Plan, metrics_port: int, console: Console) -> dict[str, Any]:
    """Run the load process while sampling memory and backlog; every figure the verdict needs."""
    assert parvis.worker is not None
    processes = {"API": parvis.api, "projector": parvis.projector, "worker": parvis.worker}
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    jobs_before = worker_metrics(metrics)
    cpu_before = {name: _cpu(proc.pid) for name, proc in processes.items()}
    machine_before = psutil.cpu_times()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    since = datetime.now(UTC)
    backends = Backends(parvis.database_url)
    start = time.monotonic()
    with ExitStack() as stack_, psycopg.connect(parvis.database_url, autocommit=True) as conn:
        samplers = {name: stack_.enter_context(Sampler(proc.pid, p.interval)) for name, proc in processes.items()}
        backlog = stack_.enter_context(Sampler(0, p.interval, measure=lambda: _behind(conn)))
        stack_.enter_context(Sampler(0, p.interval, measure=backends.sample))
        loaded = run_load(spec, p, parvis.env, console)
    backends.sample()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine = psutil.cpu_times()
    took = time.monotonic() - start
    cores = {name: (_cpu(proc.pid) - cpu_before[name]) / took for name, proc in processes.items()
             if proc.poll() is None}
    cores["PostgreSQL"] = backends.seconds / took
    cores["load"] = (children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
                     ) / took
    busy = 1 - (machine.idle - machine_before.idle) / max(1e-9, sum(machine) - sum(machine_before))
    return {
        "load": loaded,
        "exited": {name: proc.returncode for name, proc in processes.items() if proc.poll() is not None},
        "rss": {name: s.samples for name, s in samplers.items()},
        "backlog": backlog.samples,
        "jobs": jobs_of(parvis.database_url, since),
        "job_metrics": _minus(worker_metrics(metrics), jobs_before),
        "cores": cores, "machine_busy": busy,
    }


def run_load(spec: dict[str, Any], p: Plan, env: dict[str, str], console: Console) -> dict[str, Any]:
    """The load process (tests.bench.mixed), with a progress bar; its JSON."""
    with tempfile.TemporaryDirectory(prefix="parvis-soak-") as tmp:
        spec_file, out, err = Path(tmp) / "spec.json", Path(tmp) / "out.json", Path(tmp) / "err.txt"
        spec_file.write_text(json.dumps(spec))
        with out.open("w") as stdout, err.open("w") as stderr, progress(console) as bar:
            task = bar.add_task(f"soak: {p.seconds:.0f} s of mixed load", total=p.seconds)
            proc = subprocess.Popen([sys.executable, "-m", "tests.bench.mixed", str(spec_file), "--seconds",
                                     str(p.seconds)], cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
            start = time.monotonic()
            try:
                while proc.poll() is None:
                    if time.monotonic() - start > p.seconds + 300:
                        raise TimeoutError("the load process did not finish")
                    bar.update(task, completed=min(p.seconds, time.monotonic() - start))
                    time.sleep(0.5)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"the load process failed ({proc.returncode}): {err.read_text()[-3000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def worker_metrics(url: str) -> dict[str, float]:
    """The workers' job runs by outcome, and publication failures, as their Prometheus endpoint counts them."""
    counts: dict[str, float] = {}
    try:
        text = httpx.get(url, timeout=10).text
    except httpx.HTTPError:
        return {"unreachable": 1.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "parvis_job_seconds_count":
                key = f"runs {sample.labels['outcome']}"
                counts[key] = counts.get(key, 0) + sample.value
            elif sample.name == "parvis_publication_failures_total":
                counts["publication failures"] = counts.get("publication failures", 0) + sample.value
    return counts


def jobs_of(database_url: str, since: datetime) -> dict[str, dict[str, int]]:
    """Per job kind: done since `since`; given up, still due, and handed to Redis more than once (ever)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT actor, count(*) FILTER (WHERE status = 'done' AND done_at >= %s) AS done, "
            "count(*) FILTER (WHERE status = 'failed') AS failed, "
            "count(*) FILTER (WHERE status = 'pending' AND due_at <= now()) AS due, "
            "count(*) FILTER (WHERE attempts > 1) AS again, coalesce(max(attempts), 0) AS most "
            "FROM parvis.jobs GROUP BY actor ORDER BY actor", (since,)).fetchall()
    return {r[0]: {"done": r[1], "failed": r[2], "due": r[3], "redelivered": r[4], "most_attempts": r[5]}
            for r in rows}


class Backends:
    """CPU time of the PostgreSQL server processes serving one database, when the server runs on this machine."""

    def __init__(self, database_url: str) -> None:
        self.name = database_url.rsplit("/", 1)[-1]
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def sample(self) -> int:
        """Note the CPU time of each backend of the database (as many as there are now)."""
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or ())
            if cmdline.startswith("postgres: ") and f" {self.name} " in cmdline:
                spent = _cpu(proc.pid)
                self.first.setdefault(proc.pid, spent)
                self.last[proc.pid] = spent
        return len(self.last)

    @property
    def seconds(self) -> float:
        """CPU seconds the backends spent between their first sample and their last (a backend that came and went
        between two samples is missed)."""
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def _minus(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def _behind(conn: psycopg.Connection[Any]) -> int:
    """Events committed that some read model does not have yet."""
    from parvis.wiring import read_model_names

    found = conn.execute(
        "SELECT (SELECT coalesce(max(notification_id), 0) FROM public.parvis_events) - min(position) "
        "FROM parvis.tracking WHERE projection = ANY(%s)", (read_model_names(),)).fetchone()
    return int(found[0] or 0) if found else 0


# ---------------------------------------------------------------------------------------------- the verdict
def judge(p: Plan, figures: dict[str, Any]) -> list[dict[str, Any]]:
    loaded = figures["load"]
    seconds = loaded["seconds"]
    measured_from = loaded["started"] + p.warmup
    rows = [_kind_row(kind, RATES[kind], t, seconds, p) for kind, t in loaded["kinds"].items()]
    rows.append(_probe_row(loaded["probe"], seconds))
    for n, feed in enumerate(loaded["subscriptions"], 1):
        rows.append(_feed_row(n, feed, seconds, p))
    rows.append(_jobs_row(figures))
    rows.append(_lag_row(loaded["probe"]["lags"], figures["backlog"], measured_from, loaded["started"] + seconds))
    for name, samples in figures["rss"].items():
        rows.append(_rss_row(name, samples, measured_from, p, figures["exited"].get(name)))
    rows.append(_cpu_row(figures))
    return rows


def _kind_row(kind: str, rate: float, t: dict[str, Any], seconds: float, p: Plan) -> dict[str, Any]:
    refused = sum(t["refused"].values())
    value = (f"{t['done']:,} done ({t['done'] / seconds:.2f}/s), p50 {t['p50']:.0f} ms, p99 {t['p99']:.0f} ms; "
             f"{t['errors']} errors{_causes(t['causes'])}; {refused} refused{_causes(t['refused'])}, "
             f"{t['late']} late, {t['idle']} idle, {t['inconsistent']} not consistent within 2 s")
    return row(kind, WHAT[kind].format(ahead=p.schedule_ahead), f"{t['ticks']:,} ticks ({rate:g}/s)", value,
               t["done"] / max(1, t["ticks"]), "no error; progress", t["errors"] == 0 and t["done"] > 0, **t)


def _probe_row(probe: dict[str, Any], seconds: float) -> dict[str, Any]:
    figures = {k: v for k, v in probe.items() if k != "lags"}
    value = (f"{probe['commands']:,} committed ({probe['commands'] / seconds:.2f}/s), {probe['late']} late; "
             f"{probe['errors']} errors{': ' + probe['first_errors'][0] if probe['first_errors'] else ''}")
    return row("lag probe", "B4's probe: draft, submit, approve, ingest one, through the domain from the load "
               "process, in the other tenants", f"{int(PROBE_RATE * seconds):,} asked ({PROBE_RATE:g}/s)", value,
               probe["commands"] / max(1, PROBE_RATE * seconds), "no error; progress",
               probe["errors"] == 0 and probe["commands"] > 0, **figures)


def _feed_row(n: int, feed: dict[str, Any], seconds: float, p: Plan) -> dict[str, Any]:
    value = (f"{feed['messages']:,} messages, longest gap {feed['longest_gap']:.1f} s, "
             f"{feed['connections']} connection(s); {feed['errors']} errors{_causes(feed['causes'])}")
    return row(f"sub {n}", f"subscription {feed['operation']} (graphql-transport-ws)", f"held {seconds:.0f} s", value,
               feed["longest_gap"] / p.stall_after, f"no error; no gap > {p.stall_after:g} s",
               feed["errors"] == 0 and feed["messages"] > 0, **feed)


def _jobs_row(figures: dict[str, Any]) -> dict[str, Any]:
    jobs, counted = figures["jobs"], figures["job_metrics"]
    done = sum(j["done"] for j in jobs.values())
    failed = sum(j["failed"] for j in jobs.values())
    errors = int(counted.get("runs error", 0) + counted.get("publication failures", 0) + counted.get("unreachable", 0))
    kinds = ", ".join(f"{k} {j['done']}" for k, j in jobs.items() if j["done"])
    again = ", ".join(f"{k} {j['redelivered']} (up to {j['most_attempts']} times)" for k, j in jobs.items()
                      if j["redelivered"])
    value = (f"{done:,} jobs done ({kinds}); {failed} given up, {int(counted.get('runs error', 0))} runs in error, "
             f"{int(counted.get('runs retry', 0))} retried, {int(counted.get('publication failures', 0))} "
             f"publication failures; {sum(j['due'] for j in jobs.values())} due at the end; handed over more than "
             f"once: {again or 'none'}")
    published = jobs.get("publish_post", {}).get("done", 0)
    analysed = jobs.get("analyse_interaction", {}).get("done", 0)
    return row("jobs", "worker jobs during the run (outbox and the worker's metrics)",
               f"{int(sum(v for k, v in counted.items() if k.startswith('runs'))):,} job runs", value,
               done / max(1, done + failed + errors), "no failure, none handed over twice; posts published, "
               "interactions analysed", failed == 0 and errors == 0 and not again and published > 0 and analysed > 0,
               jobs=jobs, metrics=counted)


def _lag_row(lags: list[list[float]], backlog: list[tuple[float, int]], start: float, end: float) -> dict[str, Any]:
    measured = [(t, ms) for t, ms in lags if t >= start]
    quarter = (end - start) / 4
    first = [ms for t, ms in measured if t < start + quarter]
    last = [ms for t, ms in measured if t >= end - quarter]
    values = [ms for _, ms in measured]
    p50, p99, top = percentile(values, 0.5), percentile(values, 0.99), max(values, default=0.0)
    first99, last99 = percentile(first, 0.99), percentile(last, 0.99)
    no_trend = last99 <= TREND * first99 or last99 <= TREND_FLOOR_MS
    behind = [n for t, n in backlog if t >= start]
    behind_last = max((n for t, n in backlog if t >= end - quarter), default=0)
    value = (f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {top:.0f} ms ({len(values):,} commands); last quarter p99 "
             f"{last99:.1f} ms; backlog max {max(behind, default=0)} events (last quarter {behind_last})")
    return row("lag", "lag from commit to every read model, after the warm-up (the probe's commands)",
               f"first quarter p99 {first99:.1f} ms", value, p99 / LAG_BOUND_MS,
               f"p99 ≤ {LAG_BOUND_MS:.0f} ms; last-quarter p99 ≤ {TREND:g} x first or ≤ {TREND_FLOOR_MS:.0f} ms",
               bool(values) and p99 <= LAG_BOUND_MS and no_trend, p50=p50, p99=p99, max=top, first_p99=first99,
               last_p99=last99, measured=len(values), backlog_max=max(behind, default=0))


def _rss_row(name: str, samples: list[tuple[float, int]], start: float, p: Plan,
             exited: int | None) -> dict[str, Any]:
    measured = [(t, r) for t, r in samples if t >= start]
    if exited is not None or len(measured) < 4:
        why = f"exited with code {exited}" if exited is not None else f"{len(measured)} samples"
        return row(f"RSS {name}", f"{name} memory", "—", why, 0.0, f"≤ {FLAT:g}", False)
    end = measured[-1][0]
    quarter = (end - measured[0][0]) / 4
    first = max(r for t, r in measured if t <= measured[0][0] + quarter)
    last = max(r for t, r in measured if t >= end - quarter)
    top = max(r for _, r in measured)
    ratio = last / first
    return row(f"RSS {name}", f"{name} process RSS, sampled every {p.interval:g} s after {p.warmup:.0f} s of warm-up: "
               "highest in the last quarter vs the first", f"{first / MB:.0f} MB (first quarter)",
               f"{last / MB:.0f} MB (last quarter; peak {top / MB:.0f} MB, {len(measured)} samples)", ratio,
               f"≤ {FLAT:g}", ratio <= FLAT, first=first, last=last, peak=top,
               samples=[(round(t - start, 1), r) for t, r in measured])


def _cpu_row(figures: dict[str, Any]) -> dict[str, Any]:
    cores = figures["cores"]
    used = sum(cores.values())
    count = os.cpu_count() or 1
    value = ", ".join(f"{name} {c:.2f}" for name, c in cores.items()) + (
        f" cores on average; the whole machine {figures['machine_busy']:.0%} busy")
    return row("CPU", "CPU the stack and the load used (the rates aim at about half the machine)",
               f"{count} cores", value, used / count, "informative", True, cores=cores,
               machine_busy=figures["machine_busy"])


def _causes(counts: dict[str, int]) -> str:
    return f" ({', '.join(f'{k} {v}' for k, v in counts.items())})" if counts else ""
