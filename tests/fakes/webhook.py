"""A fake webhook receiver: checks Parvis's HMAC signature and answers `{"id", "url"}`, once per Idempotency-Key."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes import Fault, Faults, answered

SECRET = "webhook-secret"
MAX_SKEW = 300  # seconds a receiver tolerates between X-Parvis-Timestamp and its own clock


class FakeWebhook:
    """A receiver at `<base>/hook`. `requests` counts calls per Idempotency-Key, `created` the posts it made."""

    def __init__(self, secret: str = SECRET, answer_with_id: bool = True) -> None:
        self.secret = secret
        self.app = Starlette(routes=[Route("/hook", self.receive, methods=["POST"])])
        self.reset(answer_with_id)

    def reset(self, answer_with_id: bool = True) -> None:
        """Forget every post, count and queued fault (between tests that share a server)."""
        self.answer_with_id = answer_with_id
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.posts: dict[str, dict[str, Any]] = {}  # by Idempotency-Key
        self.pings = 0
        self._ids = itertools.count(1)

    @property
    def created(self) -> int:
        return len(self.posts)

    async def receive(self, request: Request) -> Response:
        raw = await request.body()
        key = request.headers.get("idempotency-key")
        if key:
            self.requests[key] += 1
        fault = self.faults.take("hook")
        response = _answer(fault) or self._unsigned(request, raw) or self._deliver(raw, key)
        return await answered(request, fault, response)

    def _unsigned(self, request: Request, raw: bytes) -> Response | None:
        """A 401 unless the body is signed with our secret, at a time close to ours."""
        expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-parvis-signature", ""), expected):
            return JSONResponse({"error": "invalid signature"}, 401)
        stamp = request.headers.get("x-parvis-timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > MAX_SKEW:
            return JSONResponse({"error": "stale or missing timestamp"}, 401)
        return None

    def _deliver(self, raw: bytes, key: str | None) -> Response:
        payload = json.loads(raw)
        if payload.get("type") == "ping":
            self.pings += 1
            return JSONResponse({"ok": True})
        if not key or not isinstance(payload.get("body"), str) or not payload["body"].strip():
            return JSONResponse({"error": "a post needs an Idempotency-Key and a body"}, 422)
        if key not in self.posts:
            post_id = f"post-{next(self._ids)}"
            self.posts[key] = {"payload": payload, "id": post_id, "url": f"https://receiver.example/posts/{post_id}"}
        post = self.posts[key]
        answer = {"id": post["id"], "url": post["url"]} if self.answer_with_id else {}
        return JSONResponse(answer)


def _answer(fault: Fault | None) -> Response | None:
    if fault is None or fault.status is None:
        return None
    if fault.status == 429:
        return JSONResponse({"error": "slow down"}, 429, headers={"Retry-After": str(int(fault.reset_in))})
    if fault.status >= 500:
        return PlainTextResponse("Bad Gateway", fault.status)
    return JSONResponse({"error": fault.error or f"refused ({fault.status})"}, fault.status)
