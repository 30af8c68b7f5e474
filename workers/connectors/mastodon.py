"""Mastodon, through its REST API: credentials `{"base_url": "https://instance", "access_token": "..."}`."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

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

NOTIFICATIONS = "/api/v1/notifications"
ACCOUNT = "/api/v1/accounts/verify_credentials"
STATUS = "/api/v1/statuses/"
PAGE_SIZE = 40
MAX_PAGES = 10  # a burst past 400 mentions between two polls is finished by the next poll, from the cursor
# A status' counters under Parvis' metric names; Mastodon measures no impressions, reach nor clicks.
COUNTERS = {"likes": "favourites_count", "shares": "reblogs_count", "replies": "replies_count"}


class MastodonConnector:
    """Publishes statuses with an `Idempotency-Key`, which Mastodon honours by returning the status already made."""

    name = "mastodon"

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))

    def check(self, channel: ChannelRef) -> CheckResult:
        response = self._request(channel, "GET", ACCOUNT)
        if response.status_code == 200:
            return CheckResult(Health.OK, f"mastodon account {channel.handle} reachable")
        if response.status_code == 401:
            return CheckResult(Health.EXPIRED, _error_of(response))
        if response.status_code == 403:
            return CheckResult(Health.REVOKED, _error_of(response))
        raise _failure(response)

    def publish(self, channel: ChannelRef, variant: VariantRef, idempotency_key: str) -> Published:
        """Post a public status; media URLs are appended to the text as links rather than uploaded as attachments."""
        text = "\n\n".join([variant.body, "\n".join(variant.media_urls)]) if variant.media_urls else variant.body
        status = {"status": text, "visibility": "public"}
        if variant.in_reply_to:
            status["in_reply_to_id"] = variant.in_reply_to
        response = self._request(channel, "POST", "/api/v1/statuses", json=status, key=idempotency_key)
        if response.status_code != 200:
            raise _failure(response)
        try:
            made = response.json()
            return Published(str(made["id"]), made.get("url"), datetime.fromisoformat(made["created_at"]))
        except (ValueError, KeyError, TypeError):
            raise ConnectorError(FailureKind.UNKNOWN, "mastodon: a status was answered but not readable") from None

    def fetch_interactions(
        self, channel: ChannelRef, cursor: str | None, published: list[tuple[str, datetime]]
    ) -> Page:
        """Mentions newer than the cursor (a notification id), which include replies and direct messages."""
        url = http_url(credential(channel, "base_url")).rstrip("/") + NOTIFICATIONS
        query: dict[str, Any] = {"types[]": ["mention"], "limit": PAGE_SIZE}
        with httpx.Client(timeout=self.timeout) as client:
            if cursor is None:
                # A first fetch takes the latest page only: older mentions predate the channel's moderation.
                notes, _ = self._notifications(client, channel, url, query)
            else:
                notes, _ = self._notifications(client, channel, url, {**query, "since_id": cursor})
                if len(notes) >= PAGE_SIZE:
                    # A full page is the newest part of a burst: walk up from the cursor instead, so that when
                    # the walk stops at MAX_PAGES, what it missed is all newer than the cursor it returns.
                    notes = self._forward(client, channel, url, {**query, "min_id": cursor})
        new = sorted(
            {n["id"]: n for n in notes if cursor is None or _id_key(n["id"]) > _id_key(cursor)}.values(),
            key=lambda n: _id_key(n["id"]),
        )
        items = [f for f in map(_fetched, new) if f is not None]
        return Page(items, new[-1]["id"] if new else cursor)

    def fetch_metrics(self, channel: ChannelRef, published: list[tuple[str, datetime]]) -> list[dict[str, Any]]:
        """Each recent status' favourites, boosts and replies (running totals), then the account's followers."""
        base = http_url(credential(channel, "base_url")).rstrip("/")
        headers = {"Authorization": f"Bearer {credential(channel, 'access_token')}"}
        now = datetime.now(UTC)
        rows = []
        with httpx.Client(timeout=self.timeout, headers=headers) as client:
            account = json_object(self._get(client, base + ACCOUNT), _failure, "mastodon: the account")
            for status_id in measured(published, now):
                response = self._get(client, base + STATUS + quote(status_id, safe=""))
                if response.status_code != 404:  # a status deleted since has no counters any more
                    rows.append(_post_metrics(status_id, json_object(response, _failure, "mastodon: a status"), now))
        try:
            followers = int(account["followers_count"])
        except (KeyError, TypeError, ValueError):
            raise ConnectorError(FailureKind.UNKNOWN, "mastodon: the account was answered but not readable") from None
        return [*rows, {"scope": "CHANNEL", "external_id": None, "followers": followers, "measured_at": now}]

    def _get(self, client: httpx.Client, url: str) -> httpx.Response:
        try:
            return client.get(url)
        except httpx.HTTPError as exc:
            raise network_failure(self.name, exc) from None

    def _forward(self, client: httpx.Client, channel: ChannelRef, url: str, query: dict[str, Any]) -> list[Any]:
        """Pages from `min_id` upwards, each found by the previous page's `prev` link, at most MAX_PAGES."""
        notes: list[Any] = []
        params: Any = query
        for _ in range(MAX_PAGES):
            page, links = self._notifications(client, channel, url, params)
            notes += page
            newer = links.get("prev", {}).get("url")
            if len(page) < PAGE_SIZE or not newer:
                break
            # Only the link's query is taken: the token is sent to the configured instance, never to a linked host.
            params = httpx.URL(newer).params
        return notes

    def _notifications(
        self, client: httpx.Client, channel: ChannelRef, url: str, params: Any
    ) -> tuple[list[Any], dict[str, dict[str, str]]]:
        """One page of notifications (newest first) and its Link header's links."""
        headers = {"Authorization": f"Bearer {credential(channel, 'access_token')}"}
        try:
            response = client.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise network_failure(self.name, exc) from None
        if response.status_code != 200:
            raise _failure(response)
        try:
            notes = response.json()
            if not isinstance(notes, list) or not all(isinstance(n, dict) and isinstance(n["id"], str) for n in notes):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ConnectorError(
                FailureKind.UNKNOWN, "mastodon: notifications were answered but not readable"
            ) from None
        return notes, response.links

    def _request(
        self, channel: ChannelRef, method: str, path: str, json: dict[str, str] | None = None, key: str | None = None
    ) -> httpx.Response:
        base = http_url(credential(channel, "base_url")).rstrip("/")
        headers = {"Authorization": f"Bearer {credential(channel, 'access_token')}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        try:
            with httpx.Client(timeout=self.timeout) as client:
                return client.request(method, base + path, json=json, headers=headers)
        except httpx.HTTPError as exc:
            raise network_failure(self.name, exc) from None


def _fetched(note: dict[str, Any]) -> Fetched | None:
    """A mention as an interaction: a direct message, a reply, or a mention (None when its status is gone)."""
    status = note.get("status")
    if note.get("type") != "mention" or not isinstance(status, dict):
        return None  # an instance that ignores `types[]`, or a status deleted since
    try:
        answers = status.get("in_reply_to_id")
        # A private message stays one even when it answers a post: it must never be answered in public.
        kind = "DIRECT_MESSAGE" if status.get("visibility") == "direct" else "REPLY" if answers else "MENTION"
        return Fetched(
            kind,
            str(status["id"]),
            "@" + str(note["account"]["acct"]),
            plain_text(str(status.get("content") or "")),
            datetime.fromisoformat(status["created_at"]),
            str(answers) if answers else None,
        )
    except (ValueError, KeyError, TypeError):
        raise ConnectorError(FailureKind.UNKNOWN, "mastodon: a mention was answered but not readable") from None


def _post_metrics(status_id: str, status: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A status' counters as a post's row; its engagements are their sum (what people did with it)."""
    try:
        counts = {metric: int(status[key]) for metric, key in COUNTERS.items() if key in status}
    except (TypeError, ValueError):
        raise ConnectorError(FailureKind.UNKNOWN, "mastodon: a status was answered but not readable") from None
    engagements = {"engagements": sum(counts.values())} if counts else {}
    return {"scope": "POST", "external_id": status_id, **counts, **engagements, "measured_at": now}


class _PlainText(HTMLParser):
    """The text of a status' HTML, with a line break for `<br>` and a blank line between paragraphs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def plain_text(content: str) -> str:
    """A status' HTML content as plain text (links keep their full URL, entities are decoded)."""
    parser = _PlainText()
    parser.feed(content)
    parser.close()
    return "".join(parser.parts).strip()


def _id_key(notification_id: str) -> tuple[int, str]:
    """Mastodon ids are decimal strings: the longer is the newer, then they compare as text."""
    return len(notification_id), notification_id


def _error_of(response: httpx.Response) -> str:
    """The API's own explanation (`{"error": "..."}`), or the status line when the body is not JSON."""
    try:
        return f"mastodon: {response.json()['error']}"
    except (ValueError, KeyError, TypeError):
        return f"mastodon: HTTP {response.status_code}"


def _failure(response: httpx.Response) -> ConnectorError:
    status = response.status_code
    if status in (401, 403):
        return ConnectorError(FailureKind.AUTH_EXPIRED, _error_of(response))
    if status == 422:
        return ConnectorError(FailureKind.REJECTED_CONTENT, _error_of(response))
    if status == 429:
        return ConnectorError(FailureKind.RATE_LIMITED, _error_of(response), _retry_after(response))
    if status >= 500:
        return ConnectorError(FailureKind.NETWORK, _error_of(response))
    return ConnectorError(FailureKind.UNKNOWN, _error_of(response))


def _retry_after(response: httpx.Response) -> float | None:
    reset = response.headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return seconds_until(datetime.fromisoformat(reset))
        except ValueError:
            pass  # a malformed reset header: fall back on Retry-After
    return parse_retry_after(response.headers.get("Retry-After"))
