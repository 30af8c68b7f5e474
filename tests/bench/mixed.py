"""The soak's load: a steady mix of GraphQL commands, queries, ingestion, webhooks, live subscriptions and the lag
probe, each at a fixed rate, run as its own process.

    python -m tests.bench.mixed SPEC.json --seconds 600

SPEC.json (written by `tests.bench.soak`) gives the GraphQL URL, the tokens of an agency admin and of a community
manager, the tenants to act in (ids, channels, the channels' webhook secrets), the subscriptions to hold, the rate
of each kind of operation, and the lag probe (the tenants, author and reviewer that `tests.bench.lag` takes).

Each kind runs on its own clock: operation i starts at `start + i / rate`, whatever the answers of the previous
ones (an open loop, as traffic comes); when a kind already has MAX_IN_FLIGHT operations waiting for answers, the
tick is skipped and counted `late`. Posts go through a pipeline (drafted, then submitted, approved and scheduled a
few seconds ahead, which the workers then publish); a tick of a later stage with nothing to take is `idle`.
Moderation decisions take the NEW interactions the dashboards and the moderation-queue subscriptions show.

Prints one JSON object: per kind the operations done, refused (user errors, by code), errors (by cause, with the
first messages), late and idle ticks, mutations answered `consistent: false`, and latency p50 / p99 (ms); per
subscription the messages received, the longest gap without one (s) and its errors; the lag probe's commands and
(commit time, lag ms) of each. An error is a transport failure, an HTTP status other than 200, any GraphQL error
(INTERNAL or another code), a load-generator failure, or, for a subscription, a connection that fails or ends and
a gap longer than the spec's `stall_after` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import websockets

from api.hooks import sign
from tests.bench.data import _TEXTS as TEXTS
from tests.bench.lag import Commands, Listener, settle, steady, timed_lags
from tests.bench.load import percentile
from tests.bench.measures import DASHBOARD, DRAFT, INGEST

MAX_IN_FLIGHT = 16
FIRST_ERRORS = 5  # messages kept per kind, to say what went wrong
DECISIONS = ("APPROVE", "REPLY", "HIDE", "DISMISS")
AUTHORS = 300  # the pool of authors of ingested interactions (each new author gets keys of its own)
KEEP_ALIVE = 2.0  # seconds an idle connection is kept for the next request
PROBE_THREADS = 3  # commands of the probe in flight at once (a few per second need no more), one connection each

SUBMIT = """mutation($input: PostActionInput!) {
  submitPost(input: $input) { post { id status } userErrors { code message } position consistent } }"""
APPROVE = """mutation($input: ReviewPostInput!) {
  approvePost(input: $input) { post { id status } userErrors { code message } position consistent } }"""
SCHEDULE = """mutation($input: SchedulePostInput!) {
  schedulePost(input: $input) { post { id status } userErrors { code message } position consistent } }"""
DECIDE = """mutation($input: DecideInteractionInput!) {
  decideInteraction(input: $input) { interaction { id status } userErrors { code message } position consistent } }"""
SUBSCRIPTIONS = {
    "postUpdates": "subscription($t: ID!) { postUpdates(tenantId: $t) { id status } }",
    "moderationQueue": "subscription($t: ID!) { moderationQueue(tenantId: $t) { id status } }",
    "history": "subscription($t: ID!) { history(tenantId: $t) { position type aggregateType } }",
}


@dataclass
class Tally:
    """What one kind of operation did."""

    ticks: int = 0
    done: int = 0
    late: int = 0
    idle: int = 0
    inconsistent: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def error(self, cause: str, detail: str) -> None:
        self.errors[cause] += 1
        if len(self.first_errors) < FIRST_ERRORS:
            self.first_errors.append(f"{cause}: {detail[:400]}")

    def summary(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "done": self.done, "late": self.late, "idle": self.idle,
                "inconsistent": self.inconsistent, "refused": dict(self.refused), "errors": sum(self.errors.values()),
                "causes": dict(self.errors), "first_errors": self.first_errors,
                "p50": percentile(self.latencies, 0.5), "p99": percentile(self.latencies, 0.99)}


@dataclass
class Feed:
    """One live subscription as the load sees it."""

    operation: str  # the subscription field
    tenant: str
    messages: int = 0
    longest_gap: float = 0.0
    last: float = 0.0  # when the last message came (loop time), or the load started
    connections: int = 0
    tally: Tally = field(default_factory=Tally)

    def summary(self) -> dict[str, Any]:
        return {"operation": self.operation, "tenant": self.tenant, "messages": self.messages,
                "longest_gap": round(self.longest_gap, 2), "connections": self.connections,
                "errors": sum(self.tally.errors.values()), "causes": dict(self.tally.errors),
                "first_errors": self.tally.first_errors}


class Mixed:
    """The load: every kind on its own clock, sharing one HTTP client and the posts' pipeline."""

    def __init__(self, spec: dict[str, Any], seconds: float) -> None:
        self.spec = spec
        self.seconds = seconds
        self.url: str = spec["url"]
        self.base = self.url.removesuffix("/graphql")
        self.tenants: list[dict[str, Any]] = spec["tenants"]
        self.tallies: dict[str, Tally] = {kind: Tally() for kind in spec["rates"]}
        self.feeds = [Feed(s["operation"], s["tenant"]) for s in spec["subscriptions"]]
        # The pipeline: post ids waiting for their next step, and NEW interactions waiting for a decision.
        self.drafted: deque[str] = deque()
        self.submitted: deque[str] = deque()
        self.approved: deque[str] = deque()
        self.undecided: deque[str] = deque()
        self.queued: set[str] = set()  # interactions ever queued for a decision (each is decided once)
        self.rng = random.Random(11)  # noqa: S311 - load data, not secrets
        self.run_id = f"{os.getpid()}-{int(time.time())}"
        # Room for every kind's operations in flight: a wait for a connection would be the load's, not the API's.
        # Idle connections are dropped before the server's keep-alive (PARVIS_KEEP_ALIVE_SECONDS, 5 s) ends them:
        # with the same 5 s on both sides, a request sent on a connection as the server closes it fails (ReadError).
        room = httpx.Limits(max_connections=MAX_IN_FLIGHT * len(spec["rates"]), keepalive_expiry=KEEP_ALIVE)
        self.http = httpx.AsyncClient(timeout=30, limits=room)
        self.start = self.stop_at = 0.0

    # ------------------------------------------------------------------ the run
    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        ops: dict[str, Callable[[int], Awaitable[None]]] = {
            "draftPost": self.draft, "submitPost": self.submit, "approvePost": self.approve,
            "schedulePost": self.schedule, "decideInteraction": self.decide, "dashboard": self.dashboard,
            "ingestInteractions": self.ingest, "webhook": self.webhook,
        }
        with Probe(self.spec["probe"], self.seconds) as probe:
            # The subscriptions first (a feed that cannot connect counts its errors and keeps trying).
            self.stop_at = loop.time() + 3600
            connected = [asyncio.Event() for _ in self.feeds]
            feeds = [asyncio.create_task(self.follow(f, up)) for f, up in zip(self.feeds, connected, strict=True)]
            await asyncio.wait([asyncio.create_task(up.wait()) for up in connected], timeout=30)
            await asyncio.sleep(0.5)  # the last `subscribe` on its way
            self.start = loop.time()
            self.stop_at = self.start + self.seconds
            started = time.monotonic()
            for feed in self.feeds:
                feed.last = self.start
            await asyncio.gather(*(self.paced(kind, rate, ops[kind]) for kind, rate in self.spec["rates"].items()),
                                 asyncio.to_thread(probe.run), *feeds)
        await self.http.aclose()
        return {"started": started, "seconds": self.seconds, "kinds": {k: t.summary() for k, t in self.tallies.items()},
                "subscriptions": [f.summary() for f in self.feeds], "probe": probe.result}

    async def paced(self, kind: str, rate: float, op: Callable[[int], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        tally = self.tallies[kind]
        in_flight: set[asyncio.Task[None]] = set()
        i = 0
        while (due := self.start + i / rate) < self.stop_at:
            await asyncio.sleep(max(0.0, due - loop.time()))
            tally.ticks += 1
            if len(in_flight) >= MAX_IN_FLIGHT:
                tally.late += 1
            else:
                task = asyncio.create_task(self.guarded(tally, op, i))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            i += 1
        await asyncio.gather(*in_flight)

    @staticmethod
    async def guarded(tally: Tally, op: Callable[[int], Awaitable[None]], i: int) -> None:
        try:
            await op(i)
        except Exception as exc:  # a bug of the load itself must show, and not stop the other kinds
            tally.error("load generator", f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ one GraphQL request
    async def graphql(self, kind: str, token: str, query: str, variables: dict[str, Any],
                      name: str) -> dict[str, Any] | None:
        """The payload of field `name`, or None after counting the error or the refusal."""
        tally = self.tallies[kind]
        sent = time.perf_counter()
        try:
            response = await self.http.post(self.url, json={"query": query, "variables": variables},
                                            headers={"authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            tally.error("transport", f"{type(exc).__name__}: {exc}")
            return None
        took = (time.perf_counter() - sent) * 1000
        if response.status_code != 200:
            tally.error(f"HTTP {response.status_code}", response.text)
            return None
        try:
            body = response.json()
        except ValueError:
            tally.error("not JSON", response.text)
            return None
        if body.get("errors"):
            for error in body["errors"]:
                tally.error(f"GraphQL {(error.get('extensions') or {}).get('code') or 'error'}",
                            str(error.get("message")))
            return None
        payload: dict[str, Any] = body["data"][name]
        if payload.get("userErrors"):
            for error in payload["userErrors"]:
                tally.refused[error["code"]] += 1
            return None
        if payload.get("consistent") is False:
            tally.inconsistent += 1
        tally.done += 1
        tally.latencies.append(took)
        return payload

    def tenant(self, i: int) -> dict[str, Any]:
        return self.tenants[i % len(self.tenants)]

    # ------------------------------------------------------------------ the posts' pipeline
    async def draft(self, i: int) -> None:
        tenant = self.tenant(i)
        channel = tenant["channels"][i % len(tenant["channels"])]
        data = {"input": {"tenantId": tenant["id"], "temperature": "COLD",
                          "variants": [{"channelId": channel, "body": f"Soak {i} : la collecte continue"}]}}
        payload = await self.graphql("draftPost", self.spec["admin"], DRAFT, data, "draftPost")
        if payload:
            self.drafted.append(payload["post"]["id"])

    async def step(self, kind: str, source: deque[str], token: str, query: str, extra: dict[str, Any],
                   status: str, target: deque[str] | None) -> None:
        if not source:
            self.tallies[kind].idle += 1
            return
        post = source.popleft()
        payload = await self.graphql(kind, token, query, {"input": {"postId": post, **extra}}, kind)
        if payload and target is not None and payload["post"]["status"] == status:
            target.append(post)

    async def submit(self, _i: int) -> None:
        await self.step("submitPost", self.drafted, self.spec["admin"], SUBMIT, {}, "IN_REVIEW", self.submitted)

    async def approve(self, _i: int) -> None:
        await self.step("approvePost", self.submitted, self.spec["reviewer"], APPROVE, {"comment": "OK"}, "APPROVED",
                        self.approved)

    async def schedule(self, _i: int) -> None:
        # A few seconds ahead: the workers publish it while the load runs.
        at = datetime.now(UTC) + timedelta(seconds=self.spec["schedule_ahead"])
        await self.step("schedulePost", self.approved, self.spec["admin"], SCHEDULE, {"at": at.isoformat()},
                        "SCHEDULED", None)

    # ------------------------------------------------------------------ moderation
    def offer(self, interaction: dict[str, Any]) -> None:
        """A NEW interaction seen somewhere: queue it for one decision."""
        if interaction.get("status") == "NEW" and interaction["id"] not in self.queued:
            self.queued.add(interaction["id"])
            self.undecided.append(interaction["id"])

    async def decide(self, i: int) -> None:
        if not self.undecided:
            self.tallies["decideInteraction"].idle += 1
            return
        decision = DECISIONS[i % len(DECISIONS)]
        data: dict[str, Any] = {"interactionId": self.undecided.popleft(), "decision": decision,
                                "rationale": "selon la ligne éditoriale"}
        if decision == "REPLY":
            data["replyText"] = "Merci, nous revenons vers vous."
        await self.graphql("decideInteraction", self.spec["reviewer"], DECIDE, {"input": data}, "decideInteraction")

    async def dashboard(self, i: int) -> None:
        now = datetime.now(UTC)
        data = {"id": self.tenant(i)["id"], "from": now.isoformat(), "to": (now + timedelta(days=14)).isoformat()}
        tenant = await self.graphql("dashboard", self.spec["admin"], DASHBOARD, data, "tenant")
        if tenant:
            for edge in tenant["moderationQueue"]["edges"]:
                self.offer(edge["node"])

    # ------------------------------------------------------------------ ingestion
    def items(self, i: int, channel: str, count: int) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        return [{"channelId": channel, "kind": "COMMENT", "externalId": f"soak-{self.run_id}-{i}-{n}",
                 "author": f"@soak{self.rng.randrange(AUTHORS)}", "text": f"{self.rng.choice(TEXTS)} ({i}.{n})",
                 "receivedAt": (now - timedelta(seconds=self.rng.randint(1, 600))).isoformat()}
                for n in range(count)]

    async def ingest(self, i: int) -> None:
        tenant = self.tenant(i)
        items = self.items(i, tenant["channels"][i % len(tenant["channels"])], self.spec["ingest_items"])
        await self.graphql("ingestInteractions", self.spec["admin"], INGEST,
                           {"input": {"tenantId": tenant["id"], "items": items}}, "ingestInteractions")

    async def webhook(self, i: int) -> None:
        tally = self.tallies["webhook"]
        hook = self.tenant(i)["hooks"][i % len(self.tenant(i)["hooks"])]
        body = json.dumps({"items": self.items(i, hook["channel"], self.spec["webhook_items"])}).encode()
        stamp = str(int(time.time()))
        sent = time.perf_counter()
        try:
            response = await self.http.post(f"{self.base}/hooks/channels/{hook['channel']}", content=body, headers={
                "content-type": "application/json", "x-parvis-timestamp": stamp,
                "x-parvis-signature": sign(hook["secret"], stamp, body)})
        except httpx.HTTPError as exc:
            tally.error("transport", f"{type(exc).__name__}: {exc}")
            return
        if response.status_code != 200:
            tally.error(f"HTTP {response.status_code}", response.text)
            return
        tally.done += 1
        tally.latencies.append((time.perf_counter() - sent) * 1000)

    # ------------------------------------------------------------------ subscriptions
    async def follow(self, feed: Feed, connected: asyncio.Event) -> None:
        """Hold one subscription until the end, over graphql-transport-ws; a failure counts and reconnects."""
        loop = asyncio.get_running_loop()
        url = self.url.replace("http://", "ws://")
        first = True
        while loop.time() < self.stop_at:
            if not first:
                await asyncio.sleep(1)
            first = False
            try:
                async with websockets.connect(url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                                              open_timeout=10, max_size=2**22) as ws:
                    await ws.send(json.dumps({"type": "connection_init",
                                              "payload": {"Authorization": f"Bearer {self.spec['admin']}"}}))
                    ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if ack.get("type") != "connection_ack":
                        feed.tally.error("refused", json.dumps(ack))
                        continue
                    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
                        "query": SUBSCRIPTIONS[feed.operation], "variables": {"t": feed.tenant}}}))
                    feed.connections += 1
                    connected.set()
                    await self.receive(ws, feed)
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                if loop.time() < self.stop_at:
                    feed.tally.error("connection", f"{type(exc).__name__}: {exc}")
        feed.longest_gap = max(feed.longest_gap, self.stop_at - feed.last)
        if feed.longest_gap > self.spec["stall_after"]:
            feed.tally.error("stalled", f"no message for {feed.longest_gap:.1f} s")

    async def receive(self, ws: Any, feed: Feed) -> None:
        loop = asyncio.get_running_loop()
        while (left := self.stop_at - loop.time()) > 0:
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), left))
            except TimeoutError:
                return
            kind = message.get("type")
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
                continue
            if kind != "next" or message["payload"].get("errors"):
                feed.tally.error(f"message {kind}", json.dumps(message))
                return  # the operation is over: subscribe again
            now = loop.time()
            if self.start:
                feed.longest_gap = max(feed.longest_gap, now - feed.last)
                feed.last = now
            feed.messages += 1
            if feed.operation == "moderationQueue":
                self.offer(message["payload"]["data"]["moderationQueue"])


class Probe:
    """The lag probe of tests.bench.lag, in a thread of this process: domain commands at a steady rate, and the
    listener that times when every read model has each of them."""

    def __init__(self, spec: dict[str, Any], seconds: float) -> None:
        from parvis import wiring
        from parvis.settings import Settings

        self.spec = spec
        self.seconds = seconds
        self.result: dict[str, Any] = {}
        self.settings = Settings()
        self.names = wiring.read_model_names()
        self.listener = Listener(self.settings.database_url or "", self.names)
        self._exit = ExitStack()

    def __enter__(self) -> Probe:
        from parvis import wiring

        self._exit.enter_context(self.listener)
        self.app = wiring.domain(self.settings.model_copy(update={"db_pool_size": PROBE_THREADS}))
        self._exit.callback(self.app.close)
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    def run(self) -> None:
        commits: list[tuple[int, float]] = []
        rate = self.spec["rate"]
        errors: list[str] = []
        try:
            elapsed, late = steady(Commands(self.app, self.spec), rate, int(rate * self.seconds), commits,
                                   PROBE_THREADS)
        except Exception as exc:  # a failed command: an error of the run, reported with the rest
            elapsed, late = self.seconds, 0
            errors.append(f"{type(exc).__name__}: {exc}")
        settle(self.app, self.names, commits)
        lags = timed_lags(commits, self.listener.stop(), self.names)
        self.result = {"commands": len(commits), "seconds": elapsed, "late": late, "errors": len(errors),
                       "first_errors": errors, "unmeasured": len(commits) - len(lags),
                       "lags": [(round(t, 3), round(ms, 2)) for t, ms in lags]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--seconds", type=float, default=600)
    args = parser.parse_args()
    result = asyncio.run(Mixed(json.loads(args.spec.read_text()), args.seconds).run())
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
