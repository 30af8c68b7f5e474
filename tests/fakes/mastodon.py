"""A fake Mastodon instance, as docs.joinmastodon.org has it.

`verify_credentials` (with the account's counts), `POST /api/v1/statuses`, `GET /api/v1/statuses/:id` (with the
counts of favourites, boosts and replies, kept as the instance keeps them) and `GET /api/v1/notifications` (with
`types[]`, `max_id`, `since_id`, `min_id`, `limit` and the Link header that the instance's controller writes).
"""

from __future__ import annotations

import hashlib
import html
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.fakes import Fault, Faults, answered

ACCESS_TOKEN = "mastodon-token"
MAX_CHARACTERS = 500  # the default of a Mastodon instance
VISIBILITIES = ("public", "unlisted", "private", "direct")
NOTIFICATIONS_LIMIT = (40, 80)  # the default and the maximum since Mastodon 4.1


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
                Route("/api/v1/statuses/{id}", self.get_status),
                Route("/api/v1/notifications", self.list_notifications),
            ]
        )
        self.reset()

    def reset(self) -> None:
        """Forget every status, count and queued fault (between tests that share a server)."""
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.statuses: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []  # oldest first
        self.listings: list[dict[str, list[str]]] = []  # the query of each notifications request
        self._notification_ids = itertools.count(41_000_001)
        self._remote_ids = itertools.count(113_000_000_000_000_001)
        self.followers = 0
        self.status_reads: list[str] = []  # the id of each GET /api/v1/statuses/:id

    @property
    def created(self) -> int:
        return len(self.statuses)

    async def verify_credentials(self, request: Request) -> Response:
        fault = self.faults.take("verify_credentials")
        response = _answer(fault) or self._unauthorised(request) or self._account(request)
        return await answered(request, fault, response)

    async def get_status(self, request: Request) -> Response:
        status_id = request.path_params["id"]
        self.status_reads.append(status_id)
        fault = self.faults.take("status")
        response = _answer(fault) or self._unauthorised(request) or self._status(status_id)
        return await answered(request, fault, response)

    async def post_status(self, request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if key:
            self.requests[key] += 1
        fault = self.faults.take("statuses")
        response = _answer(fault) or self._unauthorised(request) or await self._post(request, key)
        return await answered(request, fault, response)

    def add_mention(
        self,
        acct: str,
        text: str,
        *,
        visibility: str = "public",
        in_reply_to: str | None = None,
        content: str | None = None,
    ) -> dict[str, Any]:
        """Someone mentions the account (a reply when `in_reply_to` names a status); `content` is raw HTML."""
        status_id = str(next(self._remote_ids))
        now = _timestamp(datetime.now(UTC))
        account = _remote_account(acct)
        if in_reply_to in self.statuses and visibility in ("public", "unlisted"):
            # Like the instance's counter caches: private and direct replies are not counted.
            self.statuses[in_reply_to]["replies_count"] += 1
        status = {
            "id": status_id,
            "created_at": now,
            "in_reply_to_id": in_reply_to,
            "in_reply_to_account_id": "1" if in_reply_to in self.statuses else None,
            "visibility": visibility,
            "content": content if content is not None else _content(self.username, text),
            "account": account,
            "mentions": [{"id": "1", "username": self.username, "acct": self.username}],
        }
        return self._notify("mention", account, status, now)

    def add_reply(self, acct: str, text: str, in_reply_to: str) -> dict[str, Any]:
        """Someone replies to a status (which mentions the account, as Mastodon replies do)."""
        return self.add_mention(acct, text, in_reply_to=in_reply_to)

    def add_favourite(self, acct: str, status_id: str) -> dict[str, Any]:
        """Someone favourites one of the account's statuses: a notification that is not a mention."""
        return self._count("favourite", "favourites_count", acct, status_id)

    def add_reblog(self, acct: str, status_id: str) -> dict[str, Any]:
        """Someone boosts one of the account's statuses."""
        return self._count("reblog", "reblogs_count", acct, status_id)

    def add_follower(self, acct: str) -> dict[str, Any]:
        """Someone follows the account."""
        self.followers += 1
        return self._notify("follow", _remote_account(acct), None, _timestamp(datetime.now(UTC)))

    def delete_status(self, status_id: str) -> None:
        """The account deletes one of its statuses: reading it is a 404 from now on."""
        del self.statuses[status_id]

    def _count(self, kind: str, counter: str, acct: str, status_id: str) -> dict[str, Any]:
        status = self.statuses.get(status_id)
        if status is not None:
            status[counter] += 1
        return self._notify(kind, _remote_account(acct), status, _timestamp(datetime.now(UTC)))

    def _notify(self, kind: str, account: dict[str, Any], status: dict[str, Any] | None, at: str) -> dict[str, Any]:
        note_id = str(next(self._notification_ids))
        note = {"id": note_id, "type": kind, "created_at": at, "account": account, "status": status}
        self.notifications.append(note)
        return note

    async def list_notifications(self, request: Request) -> Response:
        self.listings.append({k: request.query_params.getlist(k) for k in request.query_params})
        fault = self.faults.take("notifications")
        response = _answer(fault) or self._unauthorised(request) or self._notifications(request)
        return await answered(request, fault, response)

    def _notifications(self, request: Request) -> Response:
        """A page newest first, paginated as Mastodon's `to_a_paginated_by_id` does (ids compare as numbers)."""
        query = request.query_params
        default, maximum = NOTIFICATIONS_LIMIT
        limit = min(int(query.get("limit") or default), maximum)
        types, excluded = query.getlist("types[]"), query.getlist("exclude_types[]")
        max_id, since_id, min_id = (int(query.get(k) or 0) or None for k in ("max_id", "since_id", "min_id"))
        chosen = [
            n
            for n in self.notifications
            if (not types or n["type"] in types)
            and n["type"] not in excluded
            and (max_id is None or int(n["id"]) < max_id)
            and (since_id is None or int(n["id"]) > since_id)
            and (min_id is None or int(n["id"]) > min_id)
        ]
        # With `min_id` the page is the one just above it; otherwise the newest ones below `max_id`.
        page = chosen[:limit] if min_id is not None else chosen[-limit:]
        page.reverse()
        headers = {}
        if page:
            kept = [(k, v) for k, v in query.multi_items() if k in ("limit", "types[]", "exclude_types[]")]
            base = request.url.replace(query="")
            # Like the instance's controller: `next` pages down from the oldest, `prev` up from the newest; the
            # links keep `limit` and the types, not `since_id`.
            links = {"next": ("max_id", page[-1]["id"]), "prev": ("min_id", page[0]["id"])}
            headers["Link"] = ", ".join(f'<{base}?{urlencode([*kept, at])}>; rel="{rel}"' for rel, at in links.items())
        return JSONResponse(page, headers=headers)

    def _account(self, request: Request) -> Response:
        account = {"id": "1", "username": self.username, "acct": self.username, "display_name": "Parvis demo"}
        # Like the instance's counter caches: direct messages are not counted among the statuses.
        counts = {
            "followers_count": self.followers,
            "following_count": 0,
            "statuses_count": sum(s["visibility"] != "direct" for s in self.statuses.values()),
        }
        return JSONResponse({**account, **counts, "url": f"{_base(request)}/@{self.username}"})

    def _status(self, status_id: str) -> Response:
        status = self.statuses.get(status_id)
        if status is None:
            return _error(404, "Record not found")
        return JSONResponse(status)

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
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
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


def _content(username: str, text: str) -> str:
    """A status' HTML as Mastodon renders it: the mention as an h-card, paragraphs, line breaks, escaped text."""
    link = f'<a href="https://fake.example/@{username}" class="u-url mention">@<span>{username}</span></a>'
    mention = f'<span class="h-card">{link}</span>'
    paragraphs = [html.escape(p).replace("\n", "<br />") for p in text.split("\n\n")]
    paragraphs[0] = f"{mention} {paragraphs[0]}"
    return "".join(f"<p>{p}</p>" for p in paragraphs)


def _remote_account(acct: str) -> dict[str, Any]:
    """Another account, whose id is a function of its address."""
    number = int.from_bytes(hashlib.sha256(acct.encode()).digest()[:4])
    return {"id": str(number), "username": acct.split("@", maxsplit=1)[0], "acct": acct}


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")
