"""Rotation of the master secret: everything sealed, wrapped or signed with the previous keys is done again
under PARVIS_SECRET_KEY, then checked to need the previous keys no more (`parvis secrets rotate` / `verify`).

What the master secret protects, and what a rotation does with it:
- channel credentials and password hashes, sealed in the events: each channel and user whose current value the
  new key alone does not open gets a `CredentialsResealed` / `PasswordResealed` event carrying the same secret
  sealed again (never in clear); the older events keep their old ciphertext, which dies with the old key;
- per-author data keys (`parvis.author_keys`) and the author references' key (`parvis.keyring`): wrapped again,
  one row at a time, each by a compare-and-set update (a row erased or rotated meanwhile is left alone);
- history checkpoints in Redis: each one that a previous key signed, and that still verifies under it, is signed
  again under the new key (same fields), so that `verifyHistory` keeps checking them.
Access tokens, inbound webhook secrets and the checkpoint public key are derived from the master secret: they
change with it (see README, "Key rotation").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis
from cryptography.exceptions import InvalidTag

from domain.app import Parvis
from domain.errors import Conflict
from parvis import wiring
from parvis.crypto import SecretBox, UnreadableSecret, personal_cipher, subkey
from parvis.settings import Settings
from projections.checkpoints import BadCheckpoint, open_signed, public_key_bytes, sign, signing_key
from projections.personal import PersonalCipher

log = logging.getLogger("parvis.rotation")

# Aggregates whose state holds a value sealed with the master secret, and the command that seals it again.
_SEALED = {"channel": "reseal_channel_credentials", "user": "reseal_password"}
_KEY_TABLES = (
    ("parvis.author_keys", ("tenant_id", "author_ref")),
    ("parvis.keyring", ("purpose",)),
)
_CHUNK = 1000


@dataclass
class Tally:
    """What a rotation did, or what a verification found, per kind of secret."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Verification:
    """After a rotation: how many secrets the current key opens, and which still need a previous key."""

    current: Tally = field(default_factory=Tally)
    previous: Tally = field(default_factory=Tally)
    # Signed by no key we know (tampered, or another deployment's): verification of the history reports them.
    foreign_checkpoints: int = 0

    @property
    def done(self) -> bool:
        return self.previous.total() == 0


def sealed_aggregates(conn: psycopg.Connection[Any]) -> Iterator[tuple[str, str]]:
    """(kind, aggregate id) of every channel and user, from the event store itself (read models may lag)."""
    rows = conn.execute(
        "SELECT split_part(originator_id, '/', 2), originator_id FROM public.parvis_events "
        "WHERE originator_version = 1 AND split_part(originator_id, '/', 2) = ANY(%s) ORDER BY originator_id",
        (list(_SEALED),),
    )
    yield from rows


def _retrying(command: Callable[[str], Any], aggregate_id: str) -> Any:
    """A reseal races with people's commands on the same aggregate: try again on a conflict."""
    for attempt in range(5):
        try:
            return command(aggregate_id)
        except Conflict:
            if attempt == 4:
                raise
    return None


def _key_rows(conn: psycopg.Connection[Any], table: str, pk: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
    """(primary key..., wrapped) of every row, in chunks ordered by the primary key."""
    cols = ", ".join(pk)
    after: tuple[Any, ...] | None = None
    while True:
        where = f"WHERE ({cols}) > ({', '.join(['%s'] * len(pk))})" if after else ""
        rows = conn.execute(
            f"SELECT {cols}, wrapped FROM {table} {where} ORDER BY {cols} LIMIT {_CHUNK}", after or ()
        ).fetchall()
        if not rows:
            return
        yield from rows
        after = tuple(rows[-1][: len(pk)])


def rewrap_keys(conn: psycopg.Connection[Any], cipher: PersonalCipher, tally: Tally) -> None:
    """Wrap every author key (and the keyring) again under the current key; one atomic update per row."""
    for table, pk in _KEY_TABLES:
        match = " AND ".join(f"{c} = %s" for c in pk)
        for *ident, wrapped in _key_rows(conn, table, pk):
            old = bytes(wrapped)
            if cipher.is_current(old):
                continue
            try:
                new = cipher.wrap(cipher.unwrap(old))
            except InvalidTag:
                log.error("key rotation: no configured key unwraps a row of %s", table)
                continue
            # Compare-and-set: a row erased (crypto-shredding) or rotated by another run meanwhile stays as it is.
            done = conn.execute(f"UPDATE {table} SET wrapped = %s WHERE {match} AND wrapped = %s",
                                (new, *ident, old)).rowcount
            tally.add(table, done)


def _checkpoint_keys(client: redis.Redis, namespace: str) -> Iterator[str]:
    for key in client.scan_iter(match=f"{namespace}:checkpoints:*", count=500):
        name = key.decode()
        if not name.endswith(":lock") and client.type(name) == b"zset":
            yield name


def resign_checkpoints(client: redis.Redis, namespace: str, settings: Settings, tally: Tally) -> None:
    """Sign again under the current key every checkpoint that a previous key signed (and that verifies)."""
    current = wiring.checkpoint_key(settings)
    current_public = public_key_bytes(current)
    previous = [public_key_bytes(signing_key(subkey(m, "parvis/checkpoints"))) for m in settings.previous_secrets()]
    for key in _checkpoint_keys(client, namespace):
        for document, score in client.zrange(key, 0, -1, withscores=True):
            if _verifies(document, current_public):
                continue
            checkpoint = next((c for p in previous if (c := _verifies(document, p))), None)
            if checkpoint is None:
                continue
            pipe = client.pipeline(transaction=True)
            pipe.zrem(key, document)
            pipe.zadd(key, {sign(current, checkpoint): score})
            pipe.execute()
            tally.add("checkpoints")


def _verifies(document: bytes, public_key: bytes) -> Any:
    try:
        return open_signed(document, public_key)
    except BadCheckpoint:
        return None


def rotate(settings: Settings, domain: Parvis, client: redis.Redis) -> Tally:
    """Seal, wrap and sign again under PARVIS_SECRET_KEY what the previous keys sealed, wrapped and signed."""
    assert settings.database_url
    tally = Tally()
    # The author references' key goes into the keyring (under the key that derived it) before any re-wrapping.
    personal = domain.personal
    ref_key = getattr(personal, "ref_key", None)
    if ref_key is not None:
        ref_key()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for kind, aggregate_id in list(sealed_aggregates(conn)):
            try:
                outcome = _retrying(getattr(domain, _SEALED[kind]), aggregate_id)
            except UnreadableSecret:
                # Sealed with a key that is not configured: `verify` names it as still needing a previous key.
                log.error("key rotation: no configured key opens the secret of %s", aggregate_id)
                continue
            if outcome.value:
                tally.add(f"{kind} secrets")
        rewrap_keys(conn, personal_cipher(settings.secret(), settings.previous_secrets()), tally)
    resign_checkpoints(client, settings.queue_namespace, settings, tally)
    log.info("key rotation: %s", tally.counts)
    return tally


def verify(settings: Settings, domain: Parvis, client: redis.Redis) -> Verification:
    """Check that the current key alone opens every sealed secret in force, key and checkpoint."""
    assert settings.database_url
    result = Verification()
    box = SecretBox(settings.secret())
    cipher = personal_cipher(settings.secret())
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for kind, aggregate_id in sealed_aggregates(conn):
            aggregate = domain.repository.get(aggregate_id)
            sealed = aggregate.credentials if kind == "channel" else aggregate.password
            if sealed:
                (result.current if box.is_current(sealed) else result.previous).add(f"{kind} secrets")
        for table, pk in _KEY_TABLES:
            for *_ident, wrapped in _key_rows(conn, table, pk):
                (result.current if cipher.is_current(bytes(wrapped)) else result.previous).add(table)
    current_public = wiring.checkpoint_public_key(settings)
    previous = [public_key_bytes(signing_key(subkey(m, "parvis/checkpoints"))) for m in settings.previous_secrets()]
    for key in _checkpoint_keys(client, settings.queue_namespace):
        for document in client.zrange(key, 0, -1):
            if _verifies(document, current_public):
                result.current.add("checkpoints")
            elif any(_verifies(document, p) for p in previous):
                result.previous.add("checkpoints")
            else:
                result.foreign_checkpoints += 1
    return result
