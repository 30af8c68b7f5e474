"""A fake Bluesky PDS: XRPC createSession, createRecord, getRecord and listNotifications, with their error shapes.

And the AppView queries the PDS proxies: getProfile (the account's counts) and getPosts (each post's counts of
likes, reposts, replies and quotes, kept as the AppView counts them)."""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import Fault, Faults, answered

POST = "app.bsky.feed.post"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
GET_POSTS_MAX = 25  # the lexicon's maximum of `uris`
COUNTS = ("likeCount", "repostCount", "replyCount", "quoteCount")
TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
MESSAGES = {
    "AuthenticationRequired": "Invalid identifier or password",
    "ExpiredToken": "Token has expired",
    "InvalidToken": "Token could not be verified",
    "InvalidRequest": "Invalid app.bsky.feed.post record",
    "RateLimitExceeded": "Rate Limit Exceeded",
    "InternalServerError": "Internal Server Error",
}


class FakeBluesky:
    """One account on one PDS. `requests` counts createRecord calls per rkey, `created` the records made."""

    def __init__(self, handle: str = "parvis.bsky.social", app_password: str = APP_PASSWORD) -> None:
        self.handle = handle
        self.app_password = app_password
        self.did = "did:plc:" + hashlib.sha256(handle.encode()).hexdigest()[:24]
        self.app = Starlette(
            routes=[
                Route("/xrpc/com.atproto.server.createSession", self.create_session, methods=["POST"]),
                Route("/xrpc/com.atproto.repo.createRecord", self.create_record, methods=["POST"]),
                Route("/xrpc/com.atproto.repo.getRecord", self.get_record),
                Route("/xrpc/app.bsky.notification.listNotifications", self.list_notifications),
                Route("/xrpc/app.bsky.actor.getProfile", self.get_profile),
                Route("/xrpc/app.bsky.feed.getPosts", self.get_posts),
            ]
        )
        self.reset()

    def reset(self) -> None:
        """Forget every record, session, count and queued fault (between tests that share a server)."""
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.records: dict[str, dict[str, Any]] = {}
        self.logins = 0
        self._tokens: dict[str, bool] = {}  # access token -> still valid
        self.notifications: list[dict[str, Any]] = []  # oldest first
        self.listings: list[dict[str, list[str]]] = []  # the query of each listNotifications request
        self._rkeys = itertools.count(1)
        self._indexed = datetime.now(UTC)
        self.followers = 0
        self.counts: dict[str, Counter[str]] = {}  # rkey of our post -> likeCount, repostCount, ...
        self.post_queries: list[list[str]] = []  # the `uris` of each getPosts request

    @property
    def created(self) -> int:
        return len(self.records)

    def expire_sessions(self) -> None:
        """Every access token issued so far expires, as they do after two hours."""
        self._tokens = dict.fromkeys(self._tokens, False)

    async def create_session(self, request: Request) -> Response:
        fault = self.faults.take("createSession")
        response = _answer(fault) or await self._login(request)
        return await answered(request, fault, response)

    async def create_record(self, request: Request) -> Response:
        self.requests[str((await request.json()).get("rkey", ""))] += 1
        fault = self.faults.take("createRecord")
        response = _answer(fault) or self._unauthorised(request) or await self._create(request)
        return await answered(request, fault, response)

    async def get_record(self, request: Request) -> Response:
        fault = self.faults.take("getRecord")
        response = _answer(fault) or self._record(request)
        return await answered(request, fault, response)

    def uri(self, rkey: str) -> str:
        """The at:// URI of one of the account's posts."""
        return self._uri(rkey)

    def add_mention(self, handle: str, text: str) -> dict[str, Any]:
        """Someone mentions the account in a post."""
        return self._notify("mention", handle, {"text": text})

    def add_reply(self, handle: str, text: str, parent: str, root: str | None = None) -> dict[str, Any]:
        """Someone replies to the post at `parent` (an at:// URI), in the thread started by `root`."""
        reply = {
            "root": {"uri": root or parent, "cid": _cid({"uri": root or parent})},
            "parent": {"uri": parent, "cid": _cid({"uri": parent})},
        }
        self._count(parent, "replyCount")  # the AppView counts the direct replies of a post
        return self._notify("reply", handle, {"text": text, "reply": reply}, subject=parent)

    def add_quote(self, handle: str, text: str, quoted: str) -> dict[str, Any]:
        """Someone quotes the post at `quoted` with their own text."""
        embed = {"$type": "app.bsky.embed.record", "record": {"uri": quoted, "cid": _cid({"uri": quoted})}}
        self._count(quoted, "quoteCount")
        return self._notify("quote", handle, {"text": text, "embed": embed}, subject=quoted)

    def add_like(self, handle: str, liked: str) -> dict[str, Any]:
        """Someone likes the post at `liked`: a notification that is not an interaction to moderate."""
        record = {"$type": "app.bsky.feed.like", "subject": {"uri": liked, "cid": _cid({"uri": liked})}}
        self._count(liked, "likeCount")
        return self._notify("like", handle, record, subject=liked, collection="app.bsky.feed.like")

    def add_repost(self, handle: str, reposted: str) -> dict[str, Any]:
        """Someone reposts the post at `reposted`."""
        record = {"$type": "app.bsky.feed.repost", "subject": {"uri": reposted, "cid": _cid({"uri": reposted})}}
        self._count(reposted, "repostCount")
        return self._notify("repost", handle, record, subject=reposted, collection="app.bsky.feed.repost")

    def add_follower(self, handle: str) -> dict[str, Any]:
        """Someone follows the account."""
        self.followers += 1
        record = {"$type": "app.bsky.graph.follow", "subject": self.did}
        return self._notify("follow", handle, record, collection="app.bsky.graph.follow")

    def delete_post(self, uri: str) -> None:
        """The account deletes one of its posts: the AppView leaves it out from then on."""
        del self.records[uri.rsplit("/", maxsplit=1)[-1]]

    def _count(self, uri: str, counter: str) -> None:
        """One more like, repost, reply or quote on the post at `uri`, if it is one of the account's."""
        rkey = uri.removeprefix(f"at://{self.did}/{POST}/")
        if rkey != uri and rkey in self.records:
            self.counts.setdefault(rkey, Counter())[counter] += 1

    def _notify(
        self, reason: str, handle: str, record: dict[str, Any], subject: str | None = None, collection: str = POST
    ) -> dict[str, Any]:
        # Each notification is indexed a millisecond after the last at least: pages never split a tie.
        self._indexed = max(datetime.now(UTC), self._indexed + timedelta(milliseconds=1))
        author = {"did": "did:plc:" + hashlib.sha256(handle.encode()).hexdigest()[:24], "handle": handle}
        full = {"$type": POST, **record, "createdAt": _timestamp(self._indexed - timedelta(milliseconds=300))}
        note = {
            "uri": f"at://{author['did']}/{collection}/{_tid(next(self._rkeys))}",
            "cid": _cid(full),
            "author": {**author, "displayName": handle.split(".", maxsplit=1)[0].title()},
            "reason": reason,
            "record": full,
            "isRead": False,
            "indexedAt": _timestamp(self._indexed),
            "labels": [],
        }
        if subject:
            note["reasonSubject"] = subject
        self.notifications.append(note)
        return note

    async def list_notifications(self, request: Request) -> Response:
        self.listings.append({k: request.query_params.getlist(k) for k in request.query_params})
        fault = self.faults.take("listNotifications")
        response = _answer(fault) or self._unauthorised(request) or self._notifications(request)
        return await answered(request, fault, response)

    def _notifications(self, request: Request) -> Response:
        """Newest first; the cursor is the `indexedAt` of a page's last item, and pages go on below it."""
        query = request.query_params
        limit, reasons, cursor = int(query.get("limit") or 50), query.getlist("reasons"), query.get("cursor")
        if not 1 <= limit <= 100:
            return _error(400, "InvalidRequest", "limit must be between 1 and 100")
        chosen = [
            n
            for n in reversed(self.notifications)
            if (not reasons or n["reason"] in reasons) and (cursor is None or n["indexedAt"] < cursor)
        ]
        page = chosen[:limit]
        body: dict[str, Any] = {"notifications": page, "priority": False}
        if page:
            body["cursor"] = page[-1]["indexedAt"]
        return JSONResponse(body)

    async def get_profile(self, request: Request) -> Response:
        fault = self.faults.take("getProfile")
        response = _answer(fault) or self._unauthorised(request) or self._profile(request)
        return await answered(request, fault, response)

    async def get_posts(self, request: Request) -> Response:
        self.post_queries.append(request.query_params.getlist("uris"))
        fault = self.faults.take("getPosts")
        response = _answer(fault) or self._unauthorised(request) or self._posts(request)
        return await answered(request, fault, response)

    def _profile(self, request: Request) -> Response:
        if request.query_params.get("actor") not in (self.did, self.handle):
            return _error(400, "InvalidRequest", "Profile not found")
        counts = {"followersCount": self.followers, "followsCount": 0, "postsCount": len(self.records)}
        return JSONResponse({"did": self.did, "handle": self.handle, "displayName": "Parvis demo", **counts})

    def _posts(self, request: Request) -> Response:
        """The views of the posts asked for, in that order; a post that does not exist (any more) is left out."""
        uris = request.query_params.getlist("uris")
        if len(uris) > GET_POSTS_MAX:
            return _error(400, "InvalidRequest", f"uris must not have more than {GET_POSTS_MAX} elements")
        views = []
        for uri in uris:
            rkey = uri.removeprefix(f"at://{self.did}/{POST}/")
            record = self.records.get(rkey) if rkey != uri else None
            if record is not None:
                counts = self.counts.get(rkey, Counter())
                author = {"did": self.did, "handle": self.handle}
                view = {"uri": uri, "cid": _cid(record), "author": author, "record": record}
                views.append({**view, **{c: counts[c] for c in COUNTS}, "indexedAt": record["createdAt"]})
        return JSONResponse({"posts": views})

    async def _login(self, request: Request) -> Response:
        body = await request.json()
        if body.get("identifier") not in (self.handle, self.did) or body.get("password") != self.app_password:
            return _error(401, "AuthenticationRequired")
        self.logins += 1
        token = secrets.token_urlsafe(16)
        self._tokens[token] = True
        session = {"did": self.did, "handle": self.handle, "accessJwt": token, "refreshJwt": secrets.token_urlsafe(16)}
        return JSONResponse({**session, "active": True})

    async def _create(self, request: Request) -> Response:
        body = await request.json()
        rkey = str(body.get("rkey", ""))
        record = body.get("record") or {}
        if body.get("repo") not in (self.did, self.handle):
            return _error(400, "InvalidRequest", f"Could not find repo: {body.get('repo')}")
        if body.get("collection") != POST or record.get("$type") != POST or not TID.match(rkey):
            return _error(400, "InvalidRequest", "Invalid collection, record type or record key")
        if len(str(record.get("text", ""))) > 300 or "createdAt" not in record:
            return _error(400, "InvalidRequest", "Invalid app.bsky.feed.post record: Record/text is too long")
        if rkey in self.records:  # the reference PDS: the repository's tree refuses a key it already holds
            return _error(500, "InternalServerError")
        self.records[rkey] = record
        return JSONResponse({"uri": self._uri(rkey), "cid": _cid(record)})

    def _record(self, request: Request) -> Response:
        rkey = request.query_params.get("rkey", "")
        record = self.records.get(rkey)
        if request.query_params.get("collection") != POST or record is None:
            return _error(400, "RecordNotFound", f"Could not locate record: {self._uri(rkey)}")
        return JSONResponse({"uri": self._uri(rkey), "cid": _cid(record), "value": record})

    def _unauthorised(self, request: Request) -> Response | None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return _error(401, "AuthenticationRequired", "Authentication Required")
        valid = self._tokens.get(auth.removeprefix("Bearer "))
        if valid is None:
            return _error(400, "InvalidToken")
        return None if valid else _error(400, "ExpiredToken")

    def _uri(self, rkey: str) -> str:
        return f"at://{self.did}/{POST}/{rkey}"


def _answer(fault: Fault | None) -> Response | None:
    """The XRPC error for a queued fault (a 400 names its error, InvalidRequest unless told)."""
    if fault is None or fault.status is None:
        return None
    if fault.status == 429:
        headers = {
            "ratelimit-limit": "30",
            "ratelimit-remaining": "0",
            "ratelimit-reset": str(int(time.time() + fault.reset_in)),
            "ratelimit-policy": "30;w=300",
        }
        return _error(429, "RateLimitExceeded", headers=headers)
    default = {401: "AuthenticationRequired", 400: "InvalidRequest"}.get(fault.status, "InternalServerError")
    return _error(fault.status, fault.error or default)


def _error(status: int, error: str, message: str | None = None, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": error, "message": message or MESSAGES.get(error, error)}, status, headers=headers)


def _tid(n: int) -> str:
    """A record key shaped like a TID (13 base32-sortable characters)."""
    return "".join("234567abcdefghijklmnopqrstuvwxyz"[(n >> shift) & 31] for shift in range(60, -1, -5))


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cid(record: dict[str, Any]) -> str:
    return "bafyrei" + hashlib.sha256(repr(sorted(record.items())).encode()).hexdigest()[:52]
