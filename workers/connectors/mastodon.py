"""Mastodon, through its REST API: credentials `{"base_url": "https://instance", "access_token": "..."}`."""

from __future__ import annotations

from datetime import datetime

import httpx

from workers.connectors.base import (
    ChannelRef,
    CheckResult,
    ConnectorError,
    FailureKind,
    Health,
    Published,
    VariantRef,
    credential,
    http_url,
    network_failure,
    parse_retry_after,
    seconds_until,
)


class MastodonConnector:
    """Publishes statuses with an `Idempotency-Key`, which Mastodon honours by returning the status already made."""

    name = "mastodon"

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))

    def check(self, channel: ChannelRef) -> CheckResult:
        response = self._request(channel, "GET", "/api/v1/accounts/verify_credentials")
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
        response = self._request(channel, "POST", "/api/v1/statuses", json=status, key=idempotency_key)
        if response.status_code != 200:
            raise _failure(response)
        try:
            made = response.json()
            return Published(str(made["id"]), made.get("url"), datetime.fromisoformat(made["created_at"]))
        except (ValueError, KeyError, TypeError):
            raise ConnectorError(FailureKind.UNKNOWN, "mastodon: a status was answered but not readable") from None

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
