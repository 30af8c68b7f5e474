"""A fake Mastodon instance: `verify_credentials` and `POST /api/v1/statuses`, as docs.joinmastodon.org has them."""

from __future__ import annotations

import html
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.fakes import Fault, Faults, answered

ACCESS_TOKEN = "mastodon-token"
MAX_CHARACTERS = 500  # the default of a Mastodon instance
VISIBILITIES = ("public", "unlisted", "private", "direct")


class FakeMastodon:
    """One account on one instance. `requests` counts calls per Idempotency-Key, `created` the statuses made."""

    def __init__(self, access_token: str = ACCESS_TOKEN, username: str = "parvis_demo") -> None:
        self.access_token = access_token
        self.username = username
        self._ids = itertools.count(112_000_000_000_000_001)
        self.app = Starlette(
            routes=[
                Route("/api/v1/accounts/verify_credentials", self.verify_credentials),
                Route("/api/v1/statuses", self.post_status, methods=["POST"]),
            ]
        )
        self.reset()

    def reset(self) -> None:
        """Forget every status, count and queued fault (between tests that share a server)."""
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.statuses: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, dict[str, Any]] = {}

    @property
    def created(self) -> int:
        return len(self.statuses)

    async def verify_credentials(self, request: Request) -> Response:
        fault = self.faults.take("verify_credentials")
        response = _answer(fault) or self._unauthorised(request) or self._account(request)
        return await answered(request, fault, response)

    async def post_status(self, request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if key:
            self.requests[key] += 1
        fault = self.faults.take("statuses")
        response = _answer(fault) or self._unauthorised(request) or await self._post(request, key)
        return await answered(request, fault, response)

    def _account(self, request: Request) -> Response:
        account = {"id": "1", "username": self.username, "acct": self.username, "display_name": "Parvis demo"}
        return JSONResponse({**account, "url": f"{_base(request)}/@{self.username}"})

    async def _post(self, request: Request, key: str | None) -> Response:
        if key in self._by_key:  # Mastodon answers a repeated key with the status it made the first time
            return JSONResponse(self._by_key[key])
        params = await _params(request)
        text, visibility = str(params.get("status", "")), str(params.get("visibility", "public"))
        if not text.strip():
            return _error(422, "Validation failed: Text can't be blank")
        if len(text) > MAX_CHARACTERS:
            return _error(422, f"Validation failed: Text character limit of {MAX_CHARACTERS} exceeded")
        if visibility not in VISIBILITIES:
            return _error(422, "Validation failed: Visibility is not included in the list")
        status_id = str(next(self._ids))
        status = {
            "id": status_id,
            "created_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "url": f"{_base(request)}/@{self.username}/{status_id}",
            "uri": f"{_base(request)}/users/{self.username}/statuses/{status_id}",
            "visibility": visibility,
            "content": f"<p>{html.escape(text)}</p>",
            "account": {"id": "1", "username": self.username, "acct": self.username},
        }
        self.statuses[status_id] = status
        if key:
            self._by_key[key] = status
        return JSONResponse(status)

    def _unauthorised(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return _error(401, "The access token is invalid")
        return None


async def _params(request: Request) -> dict[str, Any]:
    """Mastodon takes form data or JSON alike."""
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.json()
        return body if isinstance(body, dict) else {}
    return dict(await request.form())


def _answer(fault: Fault | None) -> Response | None:
    """The documented error answer for a queued fault."""
    if fault is None or fault.status is None:
        return None
    if fault.status == 401:
        return _error(401, "The access token is invalid")
    if fault.status == 403:
        return _error(403, "This action is outside the authorized scopes")
    if fault.status == 422:
        return _error(422, fault.error or "Validation failed: Text can't be blank")
    if fault.status == 429:
        reset = datetime.now(UTC) + timedelta(seconds=fault.reset_in)
        headers = {
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": reset.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        return JSONResponse({"error": "Too many requests"}, 429, headers=headers)
    if fault.status >= 500:  # the instance's proxy answers with a page, not JSON
        return HTMLResponse("<h1>We're sorry, but something went wrong.</h1>", fault.status)
    return _error(fault.status, fault.error or "Error")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")
