"""Inbound webhooks: platforms and integrations push interactions of one channel, signed with its secret.

`POST /hooks/channels/{channelId}` with headers `X-Parvis-Timestamp: <unix seconds>` and
`X-Parvis-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body>` under the channel's hook secret
(`parvis hooks secret CHANNEL_ID`). The timestamp must be within five minutes, so a captured request cannot be
replayed later; a redelivered one is harmless anyway (duplicates by channel and external id are ignored).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import ids
from api.context import Services
from api.errors import ApiError, BadInput
from api.inputs import parse_datetime, storable
from domain.context import Actor, acting_as
from domain.errors import DomainError
from domain.inbox import Incoming

MAX_SKEW_SECONDS = 300


def hook_secret(hook_key: bytes, channel_id: str) -> str:
    """The signing secret of one channel's inbound webhook (raw channel id)."""
    return hmac.new(hook_key, f"hooks/{channel_id}".encode(), hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _refused(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def receive(request: Request, services: Services, hook_key: bytes) -> Response:
    try:
        channel = ids.raw(request.path_params["channel_id"], "Channel", "channelId")
    except ApiError:
        return _refused(404, "no such channel")
    body = await request.body()
    timestamp = request.headers.get("x-parvis-timestamp", "")
    given = request.headers.get("x-parvis-signature", "")
    expected = sign(hook_secret(hook_key, channel), timestamp, body)
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
        return _refused(401, "missing or stale X-Parvis-Timestamp")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return _refused(401, "bad signature")
    try:
        items = [_incoming(channel, i, raw) for i, raw in enumerate(json.loads(body)["items"])]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return _refused(400, f"the body must be {{\"items\": [...]}} of interactions ({type(exc).__name__}: {exc})")
    except ApiError as exc:
        return _refused(422, exc.message)
    actor = Actor(id="system", reason=f"inbound webhook of channel {ids.encode('Channel', channel)}")
    try:
        with acting_as(actor):
            outcome = await services.call(services.domain.ingest_interactions, ids.scope(channel), items)
    except DomainError as exc:
        status = 404 if exc.code == "NOT_FOUND" else 422
        return _refused(status, exc.message, field=list(exc.field or ()))
    accepted, duplicates = outcome.value
    return JSONResponse({"accepted": accepted, "duplicates": duplicates, "position": outcome.position})


def _incoming(channel: str, index: int, raw: dict[str, Any]) -> Incoming:
    reply_to = raw.get("inReplyToPostId")
    texts = {name: str(raw[name]) for name in ("kind", "externalId", "author", "text")}
    for name, value in texts.items():
        if not storable(value):  # it would stop the read models that project it
            raise BadInput(f"items.{index}.{name} must not contain the NUL character or unpaired surrogates")
    try:
        received_at = parse_datetime(str(raw["receivedAt"]))
    except GraphQLError as exc:
        raise BadInput(f"items.{index}.receivedAt: {exc.message}") from None
    return Incoming(
        channel_id=channel,
        kind=texts["kind"],
        external_id=texts["externalId"],
        author=texts["author"],
        text=texts["text"],
        received_at=received_at,
        in_reply_to=ids.raw(reply_to, "Post", f"items.{index}.inReplyToPostId") if reply_to else None,
    )
