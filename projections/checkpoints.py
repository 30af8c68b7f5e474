"""Signed checkpoints of the tenants' history heads, kept in Redis so that they outlive a rewritten database."""

# A checkpoint says "at `at`, the history of `tenant` had `seq` entries, the last at `position`, with chain hash
# `hash`", signed with Ed25519. Stored per tenant in the sorted set `<namespace>:checkpoints:<tenant>`, scored by
# seq. The signature covers the five fields as compact JSON with sorted keys (`Checkpoint.payload`): the exact
# bytes that the standalone `parvis/verify_export.py` recomputes.

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from redis.asyncio import Redis

log = logging.getLogger("parvis.checkpoints")

class BadCheckpoint(ValueError):
    """A checkpoint document that is malformed or whose signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    """A tenant's history head at one moment: its length, last position and chain hash."""

    tenant: str
    seq: int
    position: int
    hash: str
    at: str

    def payload(self) -> bytes:
        """The bytes the signature covers."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


def signing_key(seed: bytes) -> Ed25519PrivateKey:
    """The Ed25519 key whose 32-byte seed is derived from the master secret."""
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key (what `parvis audit public-key` prints, base64)."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign(key: Ed25519PrivateKey, checkpoint: Checkpoint) -> str:
    """The signed document: the checkpoint's fields plus `signature` (base64), as compact JSON."""
    signature = base64.b64encode(key.sign(checkpoint.payload())).decode()
    return json.dumps({**asdict(checkpoint), "signature": signature}, sort_keys=True, separators=(",", ":"))


def open_signed(document: str | bytes, public_key: bytes) -> Checkpoint:
    """The checkpoint of a signed document; BadCheckpoint when malformed or not signed by that key."""
    try:
        raw = json.loads(document)
        checkpoint = Checkpoint(
            tenant=raw["tenant"], seq=raw["seq"], position=raw["position"], hash=raw["hash"], at=raw["at"]
        )
        signature = base64.b64decode(raw["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadCheckpoint("malformed checkpoint") from None
    # Exact types: the signature covers the JSON types too, and a string seq must not compare as a number.
    types = (str, int, int, str, str)
    if any(type(v) is not t for v, t in zip(asdict(checkpoint).values(), types, strict=True)):
        raise BadCheckpoint("malformed checkpoint")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, checkpoint.payload())
    except (InvalidSignature, ValueError):
        raise BadCheckpoint(f"the checkpoint at seq {checkpoint.seq} has an invalid signature") from None
    return checkpoint


def key_of(namespace: str, tenant: str) -> str:
    """The Redis sorted set holding a tenant's checkpoints."""
    return f"{namespace}:checkpoints:{tenant}"


@dataclass(frozen=True)
class Checkpoints:
    """Where a deployment's checkpoints are read: a Redis client, the key namespace, the verifying public key."""

    redis: Redis
    namespace: str
    public_key: bytes

    async def documents(self, tenant: str) -> list[bytes]:
        """Every stored checkpoint document of a tenant, by seq."""
        return list(await self.redis.zrange(key_of(self.namespace, tenant), 0, -1))


@dataclass
class Round:
    """What one checkpoint round did."""

    signed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Tenants whose history no longer holds their last checkpoint: signing them would bless the change.
    diverged: list[str] = field(default_factory=list)
    latest: dict[str, str] = field(default_factory=dict)


async def checkpoint_heads(
    conn: asyncpg.Connection,
    redis: Redis,
    namespace: str,
    key: Ed25519PrivateKey,
    *,
    tenant: str | None = None,
    now: datetime | None = None,
) -> Round:
    """Sign the head of every tenant (or of one) that moved since its last checkpoint, on top of an intact one."""
    at = (now or datetime.now(UTC)).isoformat()
    where, args = ("WHERE tenant_id = $1", [tenant]) if tenant else ("", [])
    heads = await conn.fetch(f"SELECT tenant_id, seq, position, hash FROM read.history_heads {where} ORDER BY 1", *args)
    public = public_key_bytes(key)
    async with redis.pipeline(transaction=False) as pipe:
        for head in heads:
            pipe.zrange(key_of(namespace, head["tenant_id"]), -1, -1)
        latest_documents: list[list[bytes]] = await pipe.execute() if heads else []
    previous: dict[str, tuple[Checkpoint, str]] = {}
    for head, found in zip(heads, latest_documents, strict=True):
        if found:
            try:
                previous[head["tenant_id"]] = (open_signed(found[0], public), found[0].decode())
            except BadCheckpoint:
                # A document this key did not sign proves nothing; verification reports it.
                log.warning("the last checkpoint of %s does not verify; signing anew", head["tenant_id"])
    entries = await _entries_at(conn, [(t, cp.seq) for t, (cp, _) in previous.items()])
    result = Round()
    additions: list[tuple[str, str, int]] = []
    for head in heads:
        scope = head["tenant_id"]
        last = previous.get(scope)
        if last is not None and (last[0].seq, last[0].hash) == (head["seq"], head["hash"]):
            result.unchanged.append(scope)
            result.latest[scope] = last[1]
            continue
        if last is not None and (head["seq"] < last[0].seq or entries.get(scope) != (last[0].position, last[0].hash)):
            log.error("the history of %s no longer holds its checkpoint at seq %s: not signing", scope, last[0].seq)
            result.diverged.append(scope)
            continue
        document = sign(key, Checkpoint(scope, head["seq"], head["position"], head["hash"], at))
        additions.append((scope, document, head["seq"]))
        result.signed.append(document)
        result.latest[scope] = document
    if additions:
        async with redis.pipeline(transaction=False) as pipe:
            for scope, document, seq in additions:
                pipe.zadd(key_of(namespace, scope), {document: seq})
            await pipe.execute()
    return result


async def _entries_at(conn: asyncpg.Connection, wanted: Sequence[tuple[str, int]]) -> dict[str, tuple[int, str]]:
    """(position, hash) of the history entry at a given seq, per tenant."""
    if not wanted:
        return {}
    rows: list[Any] = await conn.fetch(
        "SELECT h.tenant_id, h.position, h.hash FROM read.history h "
        "JOIN unnest($1::text[], $2::bigint[]) AS w(tenant_id, seq) USING (tenant_id, seq)",
        [t for t, _ in wanted],
        [s for _, s in wanted],
    )
    return {r["tenant_id"]: (r["position"], r["hash"]) for r in rows}
