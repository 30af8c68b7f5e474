"""The load generator: N concurrent GraphQL-over-HTTP clients, run as its own process over loopback.

    python -m tests.bench.load URL BODIES.json [--clients 32] [--seconds 10] [--warmup 2] [--token T] [--once]

BODIES.json is a list of request bodies ({"query", "variables"}) that the clients take in turn. Prints one JSON
object: requests completed in the measured window (after the warm-up), errors, throughput (requests/s), and
latency p50 and p99 (ms) of those requests.
A request is an error when its status is not 200 or its body carries GraphQL errors or user errors.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

# GraphQL errors, or user errors of a mutation payload (with or without a space after the colon).
_ERRORS = (b'"errors"', b'"userErrors":[{', b'"userErrors": [{')


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) of samples by the nearest-rank method; 0 when there are none."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def run(url: str, bodies: list[bytes], clients: int, seconds: float, warmup: float,
              token: str | None, *, once: bool = False) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    turn = iter(bodies) if once else itertools.cycle(bodies)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    if once:
        warmup, seconds = 0, float("inf")
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def client(http: httpx.AsyncClient) -> None:
        while loop.time() < stop_at:
            body = next(turn, None)
            if body is None:
                return
            sent = time.perf_counter()
            response = await http.post(url, content=body, headers=headers)
            took = (time.perf_counter() - sent) * 1000
            if not measure_from <= loop.time() <= stop_at:
                continue  # completed during the warm-up, or after the window
            if response.status_code != 200 or any(marker in response.content for marker in _ERRORS):
                errors.append(f"{response.status_code} {response.text[:300]}")
            latencies.append(took)

    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    if once:
        seconds = loop.time() - start
    cpu = os.times()
    return {
        "requests": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
        "seconds": seconds, "throughput": len(latencies) / seconds, "clients": clients,
        "p50": percentile(latencies, 0.50), "p99": percentile(latencies, 0.99),
        "client_cpu_seconds": cpu.user + cpu.system,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("bodies", type=Path)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--token")
    parser.add_argument("--once", action="store_true", help="send each body once, then stop (no warm-up)")
    args = parser.parse_args()
    bodies = [json.dumps(b).encode() for b in json.loads(args.bodies.read_text())]
    result = asyncio.run(run(args.url, bodies, args.clients, args.seconds, args.warmup, args.token, once=args.once))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
