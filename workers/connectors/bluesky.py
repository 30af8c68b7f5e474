"""Bluesky, through AT Protocol XRPC.

Credentials: `{"service": "https://pds", "identifier": "handle or did", "app_password": "..."}`.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from workers.connectors.base import (
    ChannelRef,
    CheckResult,
    ConnectorError,
    FailureKind,
    Fetched,
    Health,
    Page,
    Published,
    VariantRef,
    credential,
    http_url,
    json_object,
    measured,
    network_failure,
    parse_retry_after,
    seconds_until,
)

POST = "app.bsky.feed.post"
MAX_GRAPHEMES = 300
MAX_BYTES = 3000  # the lexicon's second bound on `text`
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_TOKEN_ERRORS = ("ExpiredToken", "InvalidToken")
LIST_NOTIFICATIONS = "app.bsky.notification.listNotifications"
PAGE_SIZE = 100  # the lexicon's maximum
MAX_PAGES = 5
_KINDS = {"mention": "MENTION", "reply": "REPLY", "quote": "MENTION"}  # the reasons the inbox keeps
GET_PROFILE = "app.bsky.actor.getProfile"
GET_POSTS = "app.bsky.feed.getPosts"
POSTS_PER_CALL = 25  # the lexicon's maximum of `uris`
# A post view's counters under Parvis' metric names; Bluesky measures no impressions, reach nor clicks.
COUNTERS = {"likes": "likeCount", "shares": "repostCount", "replies": "replyCount", "quotes": "quoteCount"}


@dataclass(frozen=True)
class _Session:
    access_jwt: str
    did: str
    handle: str


class BlueskyConnector:
    """Creates post records under a key derived from the idempotency key, so that a retry finds its post."""

    name = "bluesky"

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        # Sessions are reused: a PDS allows only a few dozen createSession calls per account and hour.
        self._sessions: dict[tuple[str, str], _Session] = {}

    def check(self, channel: ChannelRef) -> CheckResult:
        with httpx.Client(timeout=self.timeout) as client:
            response = self._login(client, channel)
        if response.status_code == 200:
            return CheckResult(Health.OK, f"bluesky account {response.json().get('handle')} reachable")
        error, message = _error_of(response)
        if error in ("AuthenticationRequired", "AccountTakedown"):
            return CheckResult(Health.REVOKED, f"bluesky: {message}")
        if response.status_code == 401 or error in _TOKEN_ERRORS:
            return CheckResult(Health.EXPIRED, f"bluesky: {message}")
        raise _failure(response)

    def publish(self, channel: ChannelRef, variant: VariantRef, idempotency_key: str) -> Published:
        """Post the text, with media URLs appended as links (not uploaded as blobs), once per idempotency key."""
        if variant.in_reply_to:
            # A Bluesky reply needs the strong references (uri and cid) of its parent and root posts.
            raise ConnectorError(FailureKind.UNKNOWN, "bluesky: replies are not supported by this connector yet")
        record = post_record(variant, datetime.now(UTC))
        rkey = record_key(idempotency_key)
        service = http_url(credential(channel, "service")).rstrip("/")
        with httpx.Client(timeout=self.timeout) as client:
            session, fresh = self._session(client, channel)
            response = self._create(client, service, session, rkey, record)
            if not fresh and _auth_failed(response):
                session, _ = self._session(client, channel, renew=True)
                response = self._create(client, service, session, rkey, record)
            if response.status_code == 200:
                return _published(session, rkey, record["createdAt"])
            # A retry of a post that was made: the reference PDS answers 500 for the existing key, others 400.
            if response.status_code >= 500 or _error_of(response)[0] == "InvalidRequest":
                existing = self._existing(client, service, session, rkey)
                if existing is not None:
                    return existing
            raise _failure(response)

    def fetch_interactions(
        self, channel: ChannelRef, cursor: str | None, published: list[tuple[str, datetime]]
    ) -> Page:
        """Mentions, replies and quotes indexed after the cursor (the `indexedAt` of the newest one seen)."""
        since = _instant(cursor) if cursor else None
        service = http_url(credential(channel, "service")).rstrip("/")
        notes: list[dict[str, Any]] = []
        with httpx.Client(timeout=self.timeout) as client:
            session, fresh = self._session(client, channel)
            params: dict[str, Any] = {"limit": PAGE_SIZE, "reasons": list(_KINDS)}
            # The API pages backwards from the newest; a first fetch takes one page, older ones predate moderation.
            for _ in range(MAX_PAGES if since else 1):
                response = self._list(client, service, session, params)
                if not fresh and _auth_failed(response):
                    session, fresh = self._session(client, channel, renew=True)
                    response = self._list(client, service, session, params)
                page, older = _notifications(response)
                new = [n for n in page if since is None or _instant(n["indexedAt"]) > since]
                notes += new
                if not page or not older or len(new) < len(page):
                    break  # the cursor is reached, or there is nothing older
                params["cursor"] = older
        notes.sort(key=lambda n: _instant(n["indexedAt"]))
        items = [f for f in (_fetched(n, session.did) for n in notes) if f is not None]
        return Page(items, notes[-1]["indexedAt"] if notes else cursor)

    def fetch_metrics(self, channel: ChannelRef, published: list[tuple[str, datetime]]) -> list[dict[str, Any]]:
        """Each recent post's likes, reposts, replies and quotes (running totals), then the account's followers."""
        now = datetime.now(UTC)
        uris = measured(published, now)
        service = http_url(credential(channel, "service")).rstrip("/")
        with httpx.Client(timeout=self.timeout) as client:
            session, fresh = self._session(client, channel)

            def query(method: str, params: dict[str, Any]) -> dict[str, Any]:
                """An AppView query (the PDS proxies it) with the session, renewed once if it expired."""
                nonlocal session, fresh
                response = self._get(client, service, session, method, params)
                if not fresh and _auth_failed(response):
                    session, fresh = self._session(client, channel, renew=True)
                    response = self._get(client, service, session, method, params)
                return json_object(response, _failure, f"bluesky: {method}")

            profile = query(GET_PROFILE, {"actor": session.did})
            views: list[Any] = []
            for start in range(0, len(uris), POSTS_PER_CALL):
                views += query(GET_POSTS, {"uris": uris[start : start + POSTS_PER_CALL]}).get("posts") or []
        try:
            followers = int(profile["followersCount"])
            # The AppView leaves out the posts it no longer has (deleted since): they get no row.
            ours = set(uris)
            rows = [_post_metrics(view, now) for view in views if view["uri"] in ours]
        except (KeyError, TypeError, ValueError):
            raise ConnectorError(FailureKind.UNKNOWN, "bluesky: metrics were answered but not readable") from None
        return [*rows, {"scope": "CHANNEL", "external_id": None, "followers": followers, "measured_at": now}]

    def _get(
        self, client: httpx.Client, service: str, session: _Session, method: str, params: dict[str, Any]
    ) -> httpx.Response:
        auth = {"Authorization": f"Bearer {session.access_jwt}"}
        return self._call(client, "GET", f"{service}/xrpc/{method}", params=params, headers=auth)

    def _list(self, client: httpx.Client, service: str, session: _Session, params: dict[str, Any]) -> httpx.Response:
        auth = {"Authorization": f"Bearer {session.access_jwt}"}
        return self._call(client, "GET", f"{service}/xrpc/{LIST_NOTIFICATIONS}", params=params, headers=auth)

    def _session(self, client: httpx.Client, channel: ChannelRef, renew: bool = False) -> tuple[_Session, bool]:
        """The cached session of this account, or a new one (True when new)."""
        key = (credential(channel, "service"), credential(channel, "identifier"))
        if not renew and key in self._sessions:
            return self._sessions[key], False
        response = self._login(client, channel)
        if response.status_code != 200:
            raise _failure(response)
        body = response.json()
        self._sessions[key] = _Session(body["accessJwt"], body["did"], body.get("handle") or body["did"])
        return self._sessions[key], True

    def _login(self, client: httpx.Client, channel: ChannelRef) -> httpx.Response:
        service = http_url(credential(channel, "service")).rstrip("/")
        login = {"identifier": credential(channel, "identifier"), "password": credential(channel, "app_password")}
        return self._call(client, "POST", f"{service}/xrpc/com.atproto.server.createSession", json=login)

    def _create(
        self, client: httpx.Client, service: str, session: _Session, rkey: str, record: dict[str, Any]
    ) -> httpx.Response:
        body = {"repo": session.did, "collection": POST, "rkey": rkey, "record": record}
        auth = {"Authorization": f"Bearer {session.access_jwt}"}
        return self._call(client, "POST", f"{service}/xrpc/com.atproto.repo.createRecord", json=body, headers=auth)

    def _existing(self, client: httpx.Client, service: str, session: _Session, rkey: str) -> Published | None:
        params = {"repo": session.did, "collection": POST, "rkey": rkey}
        response = self._call(client, "GET", f"{service}/xrpc/com.atproto.repo.getRecord", params=params)
        if response.status_code != 200:
            return None
        return _published(session, rkey, response.json()["value"]["createdAt"])

    def _call(self, client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise network_failure(self.name, exc) from None


def record_key(idempotency_key: str) -> str:
    """A TID-shaped record key (13 base32-sortable characters) derived from the key: the same key, the same record."""
    # The TID's timestamp bits carry a hash, not a time: clients order posts by `createdAt`, not by key.
    n = int.from_bytes(hashlib.sha256(idempotency_key.encode()).digest()[:8]) >> 1  # a TID's top bit is 0
    return "".join(_TID_ALPHABET[(n >> shift) & 31] for shift in range(60, -1, -5))


def post_record(variant: VariantRef, now: datetime) -> dict[str, Any]:
    """The `app.bsky.feed.post` record, refused before any request when Bluesky would refuse it."""
    text, facets = variant.body, []
    for i, url in enumerate(variant.media_urls):
        text += "\n\n" if i == 0 else "\n"
        start = len(text.encode())
        text += url
        link = {"$type": "app.bsky.richtext.facet#link", "uri": url}
        facets.append({"index": {"byteStart": start, "byteEnd": len(text.encode())}, "features": [link]})
    length = graphemes(text)
    if length > MAX_GRAPHEMES or len(text.encode()) > MAX_BYTES:
        raise ConnectorError(
            FailureKind.REJECTED_CONTENT, f"bluesky: posts are limited to {MAX_GRAPHEMES} characters, not {length}"
        )
    created_at = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    record: dict[str, Any] = {"$type": POST, "text": text, "createdAt": created_at}
    if facets:
        record["facets"] = facets
    return record


def graphemes(text: str) -> int:
    """User-perceived characters, close to Unicode's extended grapheme clusters (the PDS has the last word)."""
    # Errs towards counting fewer, so that only text the PDS would refuse is refused here.
    count, previous, open_flag = 0, "", False
    for ch in text:
        flag = 0x1F1E6 <= ord(ch) <= 0x1F1FF  # regional indicators pair up into one flag
        if _extends(ch) or previous == "\u200d" or previous + ch == "\r\n" or (flag and open_flag):
            open_flag = False
        else:
            count, open_flag = count + 1, flag
        previous = ch
    return count


def _extends(ch: str) -> bool:
    code = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")
        or code in (0x200C, 0x200D)  # zero-width (non-)joiners
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # tag sequences (subdivision flags)
    )


def _notifications(response: httpx.Response) -> tuple[list[dict[str, Any]], str | None]:
    """One page of notifications (newest first) and the API's cursor to the older ones."""
    if response.status_code != 200:
        raise _failure(response)
    try:
        body = response.json()
        page = body["notifications"]
        for note in page:
            _instant(note["indexedAt"])
        return page, body.get("cursor") or None
    except (ValueError, KeyError, TypeError):
        raise ConnectorError(FailureKind.UNKNOWN, "bluesky: notifications were answered but not readable") from None


def _fetched(note: dict[str, Any], did: str) -> Fetched | None:
    """A notification as an interaction; a reply names our post only when its parent is one of ours."""
    kind = _KINDS.get(note.get("reason", ""))
    if kind is None:
        return None  # a PDS that ignores `reasons` also lists likes, follows and reposts
    try:
        record = note["record"]
        parent = str(((record.get("reply") or {}).get("parent") or {}).get("uri", ""))
        # Our posts' ids are their at:// URIs (see `_published`): a parent in our repository is one of them.
        ours = kind == "REPLY" and parent.startswith(f"at://{did}/{POST}/")
        return Fetched(
            kind,
            str(note["uri"]),
            str(note["author"]["handle"]),
            str(record.get("text", "")),
            _received(record.get("createdAt"), note["indexedAt"]),
            parent if ours else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConnectorError(FailureKind.UNKNOWN, "bluesky: a notification was answered but not readable") from None


def _post_metrics(view: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A post view's counters as a post's row; its engagements are their sum (what people did with it)."""
    counts = {metric: int(view[key]) for metric, key in COUNTERS.items() if key in view}
    engagements = {"engagements": sum(counts.values())} if counts else {}
    return {"scope": "POST", "external_id": str(view["uri"]), **counts, **engagements, "measured_at": now}


def _received(created_at: Any, indexed_at: str) -> datetime:
    """When the author wrote it, as their client says; when the network saw it if that is unreadable."""
    try:
        return _instant(str(created_at))
    except ValueError:
        return _instant(indexed_at)


def _instant(value: str) -> datetime:
    """An AT Protocol datetime, which always carries its time zone (a naive one is refused)."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"no time zone in {value!r}")
    return moment


def _published(session: _Session, rkey: str, created_at: str) -> Published:
    return Published(
        f"at://{session.did}/{POST}/{rkey}",
        f"https://bsky.app/profile/{session.handle}/post/{rkey}",
        datetime.fromisoformat(created_at),
    )


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """XRPC's `{"error": name, "message": text}`, or the status line when the body is not that."""
    try:
        body = response.json()
        return str(body["error"]), str(body.get("message") or body["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}", f"HTTP {response.status_code}"


def _auth_failed(response: httpx.Response) -> bool:
    return response.status_code == 401 or (response.status_code == 400 and _error_of(response)[0] in _TOKEN_ERRORS)


def _failure(response: httpx.Response) -> ConnectorError:
    status = response.status_code
    error, message = _error_of(response)
    detail = f"bluesky: {error}: {message}" if error != message else f"bluesky: {message}"
    if _auth_failed(response) or error == "AccountTakedown":
        return ConnectorError(FailureKind.AUTH_EXPIRED, detail)
    if status == 429:
        return ConnectorError(FailureKind.RATE_LIMITED, detail, _retry_after(response))
    if status >= 500:
        return ConnectorError(FailureKind.NETWORK, detail)
    if status == 400 and error == "InvalidRequest":
        return ConnectorError(FailureKind.REJECTED_CONTENT, detail)
    return ConnectorError(FailureKind.UNKNOWN, detail)


def _retry_after(response: httpx.Response) -> float | None:
    reset = response.headers.get("ratelimit-reset")  # epoch seconds
    if reset and reset.isdigit():
        return seconds_until(datetime.fromtimestamp(int(reset), UTC))
    return parse_retry_after(response.headers.get("Retry-After"))
