"""A generic webhook: credentials `{"url": "https://...", "secret": "..."}`; each post is HMAC-signed JSON."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

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
)


def signature(secret: str, body: bytes) -> str:
    """The `X-Parvis-Signature` value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookConnector:
    """POSTs to the one URL configured on the channel, never to a URL taken from content, and follows no redirect."""

    name = "webhook"

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))

    def check(self, channel: ChannelRef) -> CheckResult:
        response = self._send(channel, {"type": "ping"})
        if response.is_success:
            return CheckResult(Health.OK, f"webhook for {channel.handle} answers")
        if response.status_code in (401, 403):
            return CheckResult(Health.REVOKED, f"webhook: signature refused (HTTP {response.status_code})")
        raise _failure(response)

    def publish(self, channel: ChannelRef, variant: VariantRef, idempotency_key: str) -> Published:
        """Deliver the post; the receiver answers `{"id", "url"}` (without an id, the key stands for it)."""
        payload = {
            "idempotency_key": idempotency_key,
            "channel": {"id": channel.id, "platform": channel.platform, "handle": channel.handle},
            "body": variant.body,
            "media_urls": list(variant.media_urls),
            "in_reply_to": variant.in_reply_to,
        }
        response = self._send(channel, payload, idempotency_key)
        if not response.is_success:
            raise _failure(response)
        answer = _json(response)
        url = answer.get("url")
        external_id = str(answer.get("id") or idempotency_key)
        return Published(external_id, url if isinstance(url, str) else None, datetime.now(UTC))

    def _send(self, channel: ChannelRef, payload: dict[str, Any], idempotency_key: str | None = None) -> httpx.Response:
        url = http_url(credential(channel, "url"))
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Parvis-Signature": signature(credential(channel, "secret"), body),
            "X-Parvis-Timestamp": str(int(time.time())),
        }
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        try:
            with httpx.Client(timeout=self.timeout) as client:
                return client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise network_failure(self.name, exc) from None


def _json(response: httpx.Response) -> dict[str, Any]:
    """The receiver's JSON object, or nothing (an empty 204, a plain-text "ok")."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _failure(response: httpx.Response) -> ConnectorError:
    status = response.status_code
    answer = _json(response)
    detail = f"webhook: HTTP {status}" + (f": {answer['error']}" if isinstance(answer.get("error"), str) else "")
    if status in (401, 403):
        return ConnectorError(FailureKind.AUTH_EXPIRED, detail)
    if status in (400, 422):
        return ConnectorError(FailureKind.REJECTED_CONTENT, detail)
    if status == 429:
        return ConnectorError(FailureKind.RATE_LIMITED, detail, parse_retry_after(response.headers.get("Retry-After")))
    if status >= 500:
        return ConnectorError(FailureKind.NETWORK, detail)
    return ConnectorError(FailureKind.UNKNOWN, detail)
