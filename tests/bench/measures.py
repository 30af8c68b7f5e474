"""The measurements of DESIGN section 4 (B1-B8, P1), in the order one run takes them.

One run builds one store and grows it: one measured tenant alone (B7's baseline), ten dashboard tenants (B5 at 10
tenants, B1, B2, B4), a crowd of 1,000 tenants of about 1,000 events each (B7, B3, B6 and B8's rebuild), then
light tenants up to 10,000 (B5 at 10,000, B8's API memory, P1). Every ratio is against a baseline taken in the
same run. Throughput comes from `tests.bench.load` (a separate process, 32 clients over loopback); latencies
from the same generator with one client.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tests.bench.data import Generator, Mix, Seeded, Staff, caught_up, head
from tests.support import ROOT, Client, free_port, parvis, process_env, stop, wait_http

PEER = Path(__file__).resolve().parent / "peer"
MB = 1024 * 1024

TRIVIAL = "{ __typename }"
DASHBOARD = """
query Dashboard($id: ID!, $from: DateTime!, $to: DateTime!) {
  tenant(id: $id) {
    name timezone status
    calendar(from: $from, to: $to) { at post { id status temperature scheduledAt } channel { id handle platform } }
    moderationQueue(first: 20, filter: {status: [NEW, ASSIGNED, ESCALATED]}) {
      totalCount edges { node { id kind author text status receivedAt dueBy channel { id handle } } }
    }
    kpis { objective { id title metric target } current progress onTrack }
  }
}"""
DRAFT = """
mutation Draft($input: DraftPostInput!) {
  draftPost(input: $input) { post { id status } userErrors { code message } position consistent }
}"""
INGEST = """
mutation Ingest($input: IngestInteractionsInput!) {
  ingestInteractions(input: $input) { accepted duplicates userErrors { code message } position consistent }
}"""
AS_OF = """
query AsOf($id: ID!, $at: DateTime!) {
  tenant(id: $id) { asOf(at: $at) { eventCount posts { status } interactions { status } } }
}"""
KPI_METRICS = ["followers", "volunteer_signups", "engagements"]


@dataclass(frozen=True)
class Sizes:
    """How big each part of a run is; `quick` only checks that every measurement runs."""

    quick: bool
    measured_events: int  # B7's tenant
    dashboards: int  # the tenants B5, B1, B2 and B4 act on
    dashboard_events: int
    crowd: int  # tenants of the "1,000 tenants" store
    crowd_events: int
    light: int  # the lightweight tenants that bring the store to 10,000
    light_events: int
    light_agencies: int
    clients: int  # concurrent clients of the load generator
    seconds: float  # measured window of each load
    warmup: float
    latency_seconds: float  # window of the one-client latency runs
    ingest_calls: int  # B2: calls of 1,000 interactions
    catch_up_events: int  # B3: events both runners process
    lag_rate: float  # B4: commands per second
    lag_seconds: float
    tour: int  # B8: tenants whose dashboards the API serves before its memory is read


QUICK = Sizes(quick=True, measured_events=100, dashboards=2, dashboard_events=200, crowd=20, crowd_events=200,
              light=100, light_events=20, light_agencies=1, clients=8, seconds=1.5, warmup=0.3, latency_seconds=1,
              ingest_calls=1, catch_up_events=300, lag_rate=200, lag_seconds=2, tour=40)
FULL = Sizes(quick=False, measured_events=400, dashboards=10, dashboard_events=1000, crowd=1000, crowd_events=1000,
             light=9000, light_events=20, light_agencies=9, clients=32, seconds=15, warmup=3, latency_seconds=10,
             ingest_calls=20, catch_up_events=10_000, lag_rate=200, lag_seconds=30, tour=2000)


class BenchError(RuntimeError):
    """A measurement that could not be taken; its message goes into the table."""


# ---------------------------------------------------------------------------------------------- processes
@dataclass
class Stack:
    """Parvis under test: the API, the projector and (for the soak) the workers as separate processes."""

    database_url: str
    redis_url: str
    url: str
    api: subprocess.Popen[bytes]
    projector: subprocess.Popen[bytes]
    env: dict[str, str]
    worker: subprocess.Popen[bytes] | None = None


@contextmanager
def stack(database_url: str, redis_url: str, *, worker: bool = False, **extra: str) -> Iterator[Stack]:
    """`extra` are more PARVIS_ variables for every process."""
    # No rate limits (the load is one token from one address) and tokens that outlive a full run.
    settings = {"PARVIS_DB_POOL_SIZE": "10", **extra}  # the product's default pools unless a run says otherwise
    env = process_env(database_url, redis_url, PARVIS_RATE_LIMIT_PER_IP="", PARVIS_RATE_LIMIT_PER_TOKEN="",
                      PARVIS_ACCESS_TOKEN_TTL_SECONDS="86400",
                      PARVIS_QUEUE_NAMESPACE=f"parvis-bench-{uuid.uuid4().hex[:8]}", **settings)
    port = free_port()
    projector = parvis("project", env=env)
    api = parvis("serve", "--port", str(port), env=env)
    procs = [api, projector]
    workers = parvis("work", env=env) if worker else None
    if workers is not None:
        procs.append(workers)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield Stack(database_url, redis_url, f"http://127.0.0.1:{port}/graphql", api, projector, env, workers)
    finally:
        stop(procs, timeout=15)


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    return int(psutil.Process(pid).memory_info().rss)


class Sampler:
    """Samples a process's RSS (or what `measure` returns) every `interval` seconds in a thread, with the time of
    each sample."""

    def __init__(self, pid: int, interval: float = 0.25, measure: Callable[[], int] | None = None) -> None:
        self.pid = pid
        self.interval = interval
        self.measure = measure or (lambda: rss(pid))
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self.measure()))
            except psutil.NoSuchProcess:
                return
            self._stop.wait(self.interval)

    def quarters(self, since: float | None = None) -> tuple[int, int, int]:
        """(max in the first quarter of the time, in the last quarter, overall), of the samples taken from `since`
        (a monotonic time; all of them by default)."""
        samples = [(t, r) for t, r in self.samples if since is None or t >= since]
        if not samples:
            raise BenchError("no samples")
        start, end = samples[0][0], samples[-1][0]
        span = max(end - start, 1e-9)
        first = [r for t, r in samples if t <= start + span / 4] or [samples[0][1]]
        last = [r for t, r in samples if t >= end - span / 4] or [samples[-1][1]]
        return max(first), max(last), max(r for _, r in samples)


def load(url: str, bodies: list[dict[str, Any]], *, token: str | None, clients: int, seconds: float,
         warmup: float, once: bool = False) -> dict[str, Any]:
    """Run the load generator as its own process; its figures (throughput, p50, p99 in ms)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(bodies, f)
    try:
        args = [sys.executable, "-m", "tests.bench.load", url, f.name, "--clients", str(clients),
                "--seconds", str(seconds), "--warmup", str(warmup)]
        if token:
            args += ["--token", token]
        if once:
            args.append("--once")
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=seconds + warmup + 300,
                              check=False)
    finally:
        Path(f.name).unlink()
    if done.returncode != 0:
        raise BenchError(f"load generator failed: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["errors"] or not result["requests"]:
        raise BenchError(f"{result['errors']} errors of {result['requests']} requests: {result['first_error']}")
    return result


def per_s(result: dict[str, Any]) -> str:
    return f"{result['throughput']:,.0f} req/s (p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms)"


def latency(result: dict[str, Any]) -> str:
    return f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms ({result['requests']} runs)"


def row(id_: str, what: str, baseline: str, value: str, ratio: float, goal: str, met: bool,
        **figures: Any) -> dict[str, Any]:
    return {"id": id_, "what": what, "baseline": baseline, "value": value, "ratio": round(ratio, 3), "goal": goal,
            "met": bool(met), "figures": figures}


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class Run:
    sizes: Sizes
    stack: Stack
    gen: Generator
    console: Console
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ helpers
    @property
    def url(self) -> str:
        return self.stack.url

    @property
    def db(self) -> str:
        return self.stack.database_url

    def progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, transient=True)

    def seed(self, staff: Staff, count: int, events: int, prefix: str) -> list[Seeded]:
        with self.progress() as progress:
            task = progress.add_task(f"{count} tenants of ~{events} events ({prefix})", total=count)
            return self.gen.tenants(staff, count, Mix.of(events), prefix,
                                    progress=lambda n: progress.update(task, completed=n))

    def settle(self, what: str = "read models catching up") -> None:
        with self.progress() as progress:
            task = progress.add_task(what, total=None)
            caught_up(self.db, progress=lambda low, top: progress.update(task, completed=low, total=max(top, 1)))

    def log(self, message: str) -> None:
        self.console.log(message)

    def measure(self, ids: str, fn: Callable[[], None]) -> None:
        """Run one measurement; a failure becomes the reason in its rows, and the run goes on."""
        start = time.monotonic()
        try:
            fn()
        except Exception as exc:
            for id_ in ids.split():
                self.rows.setdefault(id_, {"id": id_, "what": "", "baseline": "", "value": "", "ratio": None,
                                           "goal": "", "met": False, "error": f"{type(exc).__name__}: {exc}"})
        self.log(f"{ids}: {time.monotonic() - start:.0f} s")

    def dashboard_bodies(self, tenants: list[Seeded]) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        return [{"query": DASHBOARD, "variables": {"id": t.tenant_id, "from": now.isoformat(),
                                                   "to": (now + timedelta(days=14)).isoformat()}} for t in tenants]

    def run_load(self, bodies: list[dict[str, Any]], token: str | None, clients: int | None = None,
                 seconds: float | None = None, *, once: bool = False) -> dict[str, Any]:
        s = self.sizes
        return load(self.url, bodies, token=token, clients=clients or s.clients, seconds=seconds or s.seconds,
                    warmup=s.warmup, once=once)

    def latency_of(self, bodies: list[dict[str, Any]], token: str) -> dict[str, Any]:
        return self.run_load(bodies, token, clients=1, seconds=self.sizes.latency_seconds)

    # ------------------------------------------------------------------ phase 1: one tenant alone, then ten
    def seed_measured(self) -> None:
        staff = self.gen.agency("Bench")
        self.state["staff"] = staff
        self.state["measured"] = self.seed(staff, 1, self.sizes.measured_events, "Mesuré")[0]
        self.settle()
        self.state["admin"] = Client(self.url).login(staff.admin_email)

    def asof_bodies(self) -> list[dict[str, Any]]:
        at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        return [{"query": AS_OF, "variables": {"id": self.state["measured"].tenant_id, "at": at}}]

    def b7_alone(self) -> None:
        admin: Client = self.state["admin"]
        answer = admin.data(AS_OF, self.asof_bodies()[0]["variables"])
        self.state["asof_events"] = answer["tenant"]["asOf"]["eventCount"]
        self.state["asof_alone"] = self.latency_of(self.asof_bodies(), admin.token or "")

    def seed_dashboards(self) -> None:
        s = self.sizes
        tenants = self.seed(self.state["staff"], s.dashboards, s.dashboard_events, "Tableau")
        self.settle()
        admin: Client = self.state["admin"]
        channels = {}
        for t in tenants:
            data = admin.data("query($id: ID!) { tenant(id: $id) { channels { id } } }", {"id": t.tenant_id})
            channels[t.tenant_key] = [c["id"] for c in data["tenant"]["channels"]]
        self.state["dashboards"], self.state["channels"] = tenants, channels

    def b5_small(self) -> None:
        admin: Client = self.state["admin"]
        bodies = self.dashboard_bodies(self.state["dashboards"])
        self.state["dash_small"] = self.latency_of(bodies, admin.token or "")
        self.state["rss_small"] = rss(self.stack.api.pid)

    # ------------------------------------------------------------------ B1
    def b1(self) -> None:
        admin: Client = self.state["admin"]
        tenants = self.state["dashboards"]
        trivial = self.run_load([{"query": TRIVIAL}], admin.token)
        bodies = [{"query": DRAFT, "variables": {"input": {
            "tenantId": t.tenant_id, "temperature": "COLD",
            "variants": [{"channelId": self.state["channels"][t.tenant_key][0], "body": f"Brouillon {i} : on avance"}],
        }}} for i, t in zip(range(500), _cycle(tenants), strict=False)]
        drafts = self.run_load(bodies, admin.token)
        ratio = drafts["throughput"] / trivial["throughput"]
        self.rows["B1"] = row(
            "B1", f"mutation draftPost over HTTP (waits for the read models), {self.sizes.clients} clients; "
            "baseline { __typename }, same token and server", per_s(trivial), per_s(drafts), ratio, "≥ 0.5",
            ratio >= 0.5, trivial=trivial, measured=drafts)

    # ------------------------------------------------------------------ B2
    def b2(self) -> None:
        admin: Client = self.state["admin"]
        tenant = self.state["dashboards"][0]
        channels = self.state["channels"][tenant.tenant_key]
        rng = random.Random(2)  # noqa: S311 - benchmark data, not secrets
        texts = ["Merci pour votre action !", "Comment puis-je aider samedi ?", "Encore une arnaque bitcoin ici",
                 "Je ne comprends pas cette décision.", "Great campaign, count me in", "Où déposer les dons ?"]
        now = datetime.now(UTC)

        def body(call: int) -> dict[str, Any]:
            items = [{"channelId": channels[i % len(channels)], "kind": "COMMENT", "externalId": f"b2-{call}-{i}",
                      "author": f"@fan{rng.randint(0, 400)}", "text": f"{rng.choice(texts)} ({call}.{i})",
                      "receivedAt": (now - timedelta(seconds=rng.randint(1, 7200))).isoformat()} for i in range(1000)]
            return {"tenantId": tenant.tenant_id, "items": items}

        calls = [body(c) for c in range(self.sizes.ingest_calls + 1)]
        http = httpx.Client(timeout=120, headers={"authorization": f"Bearer {admin.token}"})

        def send(data: dict[str, Any]) -> None:
            answer = http.post(self.url, json={"query": INGEST, "variables": {"input": data}}).json()
            if answer.get("errors") or answer["data"]["ingestInteractions"]["userErrors"]:
                raise BenchError(f"ingestInteractions: {str(answer)[:300]}")

        send(calls[0])  # warm-up: first keys of these authors, first plans of this mutation
        before = head(self.db)
        start = time.perf_counter()
        for data in calls[1:]:
            send(data)
        took = time.perf_counter() - start
        http.close()
        events = asyncio.run(_raw_insert_baseline(self.db, before, 1000))
        parvis_rate = events["count"] / took
        ratio = parvis_rate / events["rate"]
        self.rows["B2"] = row(
            "B2", f"ingestInteractions over HTTP, {self.sizes.ingest_calls} calls of 1,000 items (rules applied, "
            "authors sealed, read models waited for); baseline raw asyncpg executemany of the same stored rows, "
            "1,000 per transaction",
            f"{events['rate']:,.0f} rows/s", f"{parvis_rate:,.0f} events/s ({events['count']:,} events, "
            f"{took / self.sizes.ingest_calls * 1000:.0f} ms per call)", ratio, "≥ 0.25", ratio >= 0.25,
            events=events["count"], seconds=took, raw_rate=events["rate"])

    # ------------------------------------------------------------------ B4
    def b4(self) -> None:
        from api import ids

        staff: Staff = self.state["staff"]
        first = {t.tenant_key: ids.raw(self.state["channels"][t.tenant_key][0], "Channel")
                 for t in self.state["dashboards"]}
        spec = {"author": staff.admin_id, "reviewer": staff.reviewer_id,
                "tenants": [{"key": key, "channel": channel} for key, channel in first.items()]}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(spec, f)
        s = self.sizes
        try:
            done = subprocess.run([sys.executable, "-m", "tests.bench.lag", f.name, "--rate", str(s.lag_rate),
                                   "--seconds", str(s.lag_seconds)], cwd=ROOT, env=self.stack.env,
                                  capture_output=True, text=True, timeout=s.lag_seconds + 300, check=False)
        finally:
            Path(f.name).unlink()
        if done.returncode != 0:
            raise BenchError(f"lag run failed: {done.stderr.strip()[-500:]}")
        result = json.loads(done.stdout)
        ratio = result["p99"] / 50
        self.rows["B4"] = row(
            "B4", f"lag from commit to every read model, {s.lag_rate:.0f} commands/s for {s.lag_seconds:.0f} s "
            "(draft, submit, approve, ingest one), from another process; ratio = p99 / 50 ms",
            f"{s.lag_rate:.0f} commands/s asked, {result['rate']:.0f} achieved ({result['late']} late)",
            f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, max {result['max']:.0f} ms",
            ratio, "≤ 1 (p99 ≤ 50 ms)", ratio <= 1 and result["rate"] >= 0.95 * s.lag_rate, **result)

    # ------------------------------------------------------------------ phase 2: a crowd of 1,000 tenants
    def seed_crowd(self) -> None:
        s = self.sizes
        staff = self.gen.agency("Foule")
        self.state["crowd_staff"] = staff
        with Sampler(self.stack.projector.pid, interval=1.0) as sampler:
            self.state["crowd"] = self.seed(staff, s.crowd, s.crowd_events, "Foule")
            self.settle("read models catching up with the crowd")
        self.state["projector_live"] = sampler.quarters()
        self.state["events"] = head(self.db)

    def b7(self) -> None:
        admin: Client = self.state["admin"]
        alone = self.state["asof_alone"]
        crowded = self.latency_of(self.asof_bodies(), admin.token or "")
        ratio = crowded["p50"] / alone["p50"]
        tenants = 1 + self.sizes.dashboards + self.sizes.crowd
        self.rows["B7"] = row(
            "B7", f"Tenant.asOf of one tenant ({self.state['asof_events']} events), p50: store of {tenants:,} tenants "
            f"({self.state['events']:,} events) vs that tenant alone", latency(alone), latency(crowded), ratio,
            "≤ 1.3", ratio <= 1.3, alone=alone, crowded=crowded)

    # ------------------------------------------------------------------ B3
    def b3(self) -> None:
        from parvis import wiring
        from parvis.settings import Settings
        from tests.bench import stock

        settings = Settings(database_url=self.db, secret_key=self.stack.env["PARVIS_SECRET_KEY"], env="test")
        models = wiring.projections(settings)
        cap, count = asyncio.run(stock.cap_of(self.db, self.sizes.catch_up_events))
        try:
            ours = asyncio.run(stock.parvis_catch_up(self.db, models, count))
            # One connection per pool and one more at need: 7 runners of two pools each must fit beside the
            # running stack (and, in `make test`, the test session's) in PostgreSQL's 100 connections.
            env = {**wiring.event_store_env(self.db, pool_size=1, create_table=True), "POSTGRES_MAX_OVERFLOW": "1"}
            theirs = stock.stock_catch_up(self.db, env, models, cap)
        finally:
            asyncio.run(stock.drop_tables(self.db, models))
        ratio = theirs / ours
        self.rows["B3"] = row(
            "B3", f"catch-up of the {len(models)} read models over the store's first {count:,} events: Parvis's "
            "batched runner step vs eventsourcing's stock ProjectionRunner (one transaction per event), same handlers",
            f"{count / theirs:,.0f} events/s", f"{count / ours:,.0f} events/s", ratio, "≥ 10", ratio >= 10,
            events=count, parvis_seconds=ours, stock_seconds=theirs)

    # ------------------------------------------------------------------ B6 and the projector's memory
    def b6(self) -> None:
        events = asyncio.run(_count(self.db))
        scan = asyncio.run(_scan(self.db))
        proc = parvis("projections", "rebuild", "--all", env=self.stack.env, stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE)
        start = time.perf_counter()
        with Sampler(proc.pid) as sampler:
            _, err = proc.communicate(timeout=7200)
        took = time.perf_counter() - start
        if proc.returncode != 0:
            raise BenchError(f"rebuild failed: {err.decode()[-500:]}")
        ratio = scan / took
        self.rows["B6"] = row(
            "B6", f"full rebuild of every read model (`parvis projections rebuild --all`, {events:,} events); "
            "baseline a raw asyncpg scan of the notification log in pages of 500",
            f"{events / scan:,.0f} events/s ({scan:.1f} s)", f"{events / took:,.0f} events/s ({took:.0f} s)",
            ratio, "≥ 0.3", ratio >= 0.3, events=events, scan_seconds=scan, rebuild_seconds=took)
        first, last, top = sampler.quarters()
        live_first, live_last, live_top = self.state["projector_live"]
        ratio = last / first
        self.rows["B8b"] = row(
            "B8b", f"projector memory over the rebuild of {events:,} events: max RSS in the last quarter of the time "
            "vs the first quarter (flat ≤ 1.2)", f"{first / MB:.0f} MB (first quarter)",
            f"{last / MB:.0f} MB (last quarter; peak {top / MB:.0f} MB; live projector over the crowd "
            f"{live_first / MB:.0f} → {live_last / MB:.0f} MB)", ratio, "≤ 1.2", ratio <= 1.2,
            first=first, last=last, peak=top, live=[live_first, live_last, live_top])

    # ------------------------------------------------------------------ phase 3: 10,000 tenants
    def seed_light(self) -> None:
        s = self.sizes
        light: list[Seeded] = []
        for a in range(s.light_agencies):
            staff = self.gen.agency(f"Legere {a}")
            share = s.light // s.light_agencies + (1 if a < s.light % s.light_agencies else 0)
            light += self.seed(staff, share, s.light_events, f"Légère {a}")
            self.state.setdefault("light_staff", []).append(staff)
        self.state["light"] = light
        self.settle("read models catching up with the light tenants")
        self.state["tenants"] = 1 + s.dashboards + s.crowd + s.light

    def b5(self) -> None:
        admin: Client = self.state["admin"]
        bodies = self.dashboard_bodies(self.state["dashboards"])
        large = self.latency_of(bodies, admin.token or "")
        small = self.state["dash_small"]
        tenants = self.state["tenants"]
        trivial = self.run_load([{"query": TRIVIAL}], admin.token)
        dash = self.run_load(bodies, admin.token)
        self.state["dash_large"], self.state["trivial_large"] = dash, trivial
        ratio = dash["throughput"] / trivial["throughput"]
        self.rows["B5a"] = row(
            "B5a", f"tenant dashboard (calendar 14 days + moderation queue page + KPIs), {self.sizes.clients} clients, "
            f"store of {tenants:,} tenants; baseline {{ __typename }}", per_s(trivial), per_s(dash), ratio, "≥ 0.5",
            ratio >= 0.5, trivial=trivial, measured=dash)
        ratio = large["p50"] / small["p50"]
        self.rows["B5b"] = row(
            "B5b", f"the same dashboard, one client: p50 in a store of {tenants:,} tenants vs "
            f"{1 + self.sizes.dashboards} tenants", latency(small), latency(large), ratio, "≤ 1.3", ratio <= 1.3,
            small=small, large=large)

    def b8a(self) -> None:
        """The API's memory once it has served the dashboards of many tenants, in a store of 10,000."""
        s = self.sizes
        crowd_admin = Client(self.url).login(self.state["crowd_staff"].admin_email)
        light_staff = self.state["light_staff"][0]
        light_admin = Client(self.url).login(light_staff.admin_email)
        light = [t for t in self.state["light"] if t.admin_email == light_staff.admin_email]
        half = s.tour // 2
        with Sampler(self.stack.api.pid) as sampler:
            for token, tenants in ((crowd_admin.token, self.state["crowd"][:half]), (light_admin.token, light[:half])):
                self.run_load(self.dashboard_bodies(tenants), token, once=True)
        value = max(sampler.quarters()[2], rss(self.stack.api.pid))
        small = self.state["rss_small"]
        ratio = value / (250 * MB)
        self.rows["B8a"] = row(
            "B8a", f"API memory (RSS) in a store of {self.state['tenants']:,} tenants, after serving dashboards of "
            f"{min(s.tour, len(self.state['crowd']) + len(light))} of them and every load above; "
            "ratio = RSS / 250 MB", f"{small / MB:.0f} MB with {1 + s.dashboards} tenants",
            f"{value / MB:.0f} MB", ratio, "≤ 1 (≤ 250 MB)", ratio <= 1, rss_small=small, rss=value)

    # ------------------------------------------------------------------ P1
    def p1(self) -> None:
        from parvis import wiring
        from parvis.settings import Settings

        settings = Settings(database_url=self.db, secret_key=self.stack.env["PARVIS_SECRET_KEY"], env="test")
        admin: Client = self.state["admin"]
        now = datetime.now(UTC)
        bodies = [{"query": (PEER / "dashboard.graphql").read_text(), "variables": {
            "tenant": t.tenant_key, "from": now.isoformat(), "to": (now + timedelta(days=14)).isoformat(),
            "now": now.isoformat(), "metrics": KPI_METRICS}} for t in self.state["dashboards"]]
        with peer(self.db, wiring.token_key(settings)) as url:
            check = httpx.post(url, json=bodies[0], headers={"authorization": f"Bearer {admin.token}"}, timeout=30)
            data = check.json().get("data") or {}
            if check.status_code != 200 or check.json().get("errors") or not data.get("tenantByTenantId"):
                raise BenchError(f"PostGraphile answered {check.status_code}: {check.text[:300]}")
            theirs = load(url, bodies, token=admin.token, clients=self.sizes.clients, seconds=self.sizes.seconds,
                          warmup=self.sizes.warmup)
        ours = self.state["dash_large"]
        ratio = ours["throughput"] / theirs["throughput"]
        self.rows["P1"] = row(
            "P1", f"peer: the B5 dashboard read from PostGraphile {_peer_version()} over the same read-model tables "
            f"(row-level security as parvis_app), {self.sizes.clients} clients; baseline PostGraphile, value Parvis "
            "(B5a)", per_s(theirs), per_s(ours), ratio, "≥ 1 (match it)", ratio >= 1, peer=theirs, parvis=ours)


# ---------------------------------------------------------------------------------------------- baselines
async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM public.parvis_events"))
    finally:
        await conn.close()


async def _scan(dsn: str, page: int = 500) -> float:
    """Seconds to read the whole notification log in order, as the runner pages it, and do nothing with it."""
    conn = await asyncpg.connect(dsn)
    try:
        position, start = 0, time.perf_counter()
        while rows := await conn.fetch(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM public.parvis_events "
            "WHERE notification_id > $1 ORDER BY notification_id LIMIT $2", position, page):
            position = rows[-1]["notification_id"]
        return time.perf_counter() - start
    finally:
        await conn.close()


async def _raw_insert_baseline(dsn: str, after: int, per_call: int) -> dict[str, Any]:
    """The events stored after `after`, inserted again by raw executemany into a table of the same shape."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT originator_id, originator_version, topic, state FROM public.parvis_events "
                                "WHERE notification_id > $1 ORDER BY notification_id", after)
        await conn.execute("""
            DROP TABLE IF EXISTS public.bench_raw_events;
            CREATE TABLE public.bench_raw_events (
                originator_id text COLLATE "C" NOT NULL, originator_version bigint NOT NULL, topic text,
                state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version));
            CREATE UNIQUE INDEX ON public.bench_raw_events (notification_id)""")
        values = [tuple(r) for r in rows]
        start = time.perf_counter()
        for i in range(0, len(values), per_call):
            async with conn.transaction():
                await conn.executemany("INSERT INTO public.bench_raw_events (originator_id, originator_version, "
                                       "topic, state) VALUES ($1, $2, $3, $4)", values[i : i + per_call])
        took = time.perf_counter() - start
        await conn.execute("DROP TABLE public.bench_raw_events")
        return {"count": len(values), "rate": len(values) / took}
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------- the peer
@contextmanager
def peer(database_url: str, token_key: bytes) -> Iterator[str]:
    """PostGraphile 5 (installed from npm into tests/bench/peer on first use) on the same database."""
    if not (PEER / "node_modules" / "postgraphile").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEER, check=True,
                       capture_output=True, timeout=600)
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": database_url, "PORT": str(port),
           "JWT_KEY_HEX": token_key.hex(), "NODE_ENV": "production"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(["node", "--import", "./node20.mjs", "server.mjs"], cwd=PEER, env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_peer(f"http://127.0.0.1:{port}/graphql", proc, log)
            yield f"http://127.0.0.1:{port}/graphql"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_peer(url: str, proc: subprocess.Popen[bytes], log: Any, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise BenchError(f"PostGraphile exited: {log.read().decode(errors='replace')[-500:]}")
        try:
            if httpx.post(url, json={"query": TRIVIAL}, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise BenchError("PostGraphile did not answer")


def _peer_version() -> str:
    try:
        return str(json.loads((PEER / "node_modules" / "postgraphile" / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "5"


def _cycle(items: list[Any]) -> Iterator[Any]:
    while True:
        yield from items
