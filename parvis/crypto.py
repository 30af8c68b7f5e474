"""Secrets: field encryption (AES-GCM), password hashing (argon2id), subkeys (HKDF)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import threading
from collections.abc import Sequence
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from projections.personal import PersonalCipher, author_ref

_PREFIX = "v1:"


def subkey(master: bytes, purpose: str, length: int = 32) -> bytes:
    """A key for one purpose, derived from the master secret."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode()).derive(master)


class UnreadableSecret(ValueError):
    """A sealed value that none of the configured keys opens (or that is not a sealed value at all)."""


class SecretBox:
    """Seals secrets for storage in events and read models; implements the domain's Secrets port.

    Sealing uses the current master secret; opening tries it, then each previous one (PARVIS_PREVIOUS_SECRET_KEYS),
    so that a rotation can re-seal everything while every process keeps working."""

    def __init__(self, master: bytes, previous: Sequence[bytes] = ()) -> None:
        self._aead = AESGCM(subkey(master, "parvis/fields"))
        self._previous = [AESGCM(subkey(m, "parvis/fields")) for m in previous]
        self._hasher = PasswordHasher()
        self._dummy = self._hasher.hash("parvis-dummy-password")

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        blob = nonce + self._aead.encrypt(nonce, plaintext.encode(), None)
        return _PREFIX + base64.urlsafe_b64encode(blob).decode()

    def open(self, sealed: str) -> str:
        blob = _blob(sealed)
        for aead in (self._aead, *self._previous):
            try:
                return aead.decrypt(blob[:12], blob[12:], None).decode()
            except InvalidTag:
                continue
        raise UnreadableSecret("sealed with none of the configured keys")

    def is_current(self, sealed: str) -> bool:
        """Whether the current key alone opens this value."""
        blob = _blob(sealed)
        try:
            self._aead.decrypt(blob[:12], blob[12:], None)
        except InvalidTag:
            return False
        return True

    def reseal(self, sealed: str) -> str | None:
        """The same secret sealed under the current key; None when it already is."""
        return None if self.is_current(sealed) else self.seal(self.open(sealed))

    def hash_password(self, password: str) -> str:
        return self.seal(self._hasher.hash(password))

    def verify_password(self, sealed_hash: str | None, password: str) -> bool:
        if not sealed_hash:
            # Same cost as a real check, so that unknown accounts are not revealed by timing.
            with contextlib.suppress(VerificationError):
                self._hasher.verify(self._dummy, password)
            return False
        try:
            return self._hasher.verify(self.open(sealed_hash), password)
        except (VerificationError, InvalidHashError, ValueError):
            return False


def _blob(sealed: str) -> bytes:
    if not sealed.startswith(_PREFIX):
        raise UnreadableSecret("not a sealed value")
    try:
        return base64.urlsafe_b64decode(sealed[len(_PREFIX) :])
    except (ValueError, binascii.Error):
        raise UnreadableSecret("not a sealed value") from None


def digest(secret: str) -> str:
    """A digest for high-entropy secrets such as API keys (no need for a slow hash)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


class AuthorVault:
    """The domain's PersonalData port: per-author data keys in `parvis.author_keys` (crypto-shredding)."""

    def __init__(self, database_url: str, master: bytes, pool_size: int = 2, previous: Sequence[bytes] = ()) -> None:
        from psycopg_pool import ConnectionPool

        self.cipher = personal_cipher(master, previous)
        self._masters = (master, *previous)
        self._ref_key: bytes | None = None
        self._ref_lock = threading.Lock()
        self._pool = ConnectionPool(database_url, min_size=1, max_size=pool_size, open=True,
                                    kwargs={"autocommit": True})

    def author_ref(self, tenant_key: str, handle: str) -> str:
        return author_ref(self.ref_key(), tenant_key, handle)

    def ref_key(self) -> bytes:
        """The key of the author references, kept wrapped in `parvis.keyring` so that it outlives rotations.

        References are stored in the events: they must stay the same for an author whatever the master secret,
        or an erasure would miss what was received before a rotation."""
        with self._ref_lock:
            if self._ref_key is None:
                with self._pool.connection() as conn:
                    wrapped = stored_ref_key(conn)
                    if wrapped is None:
                        conn.execute(
                            "INSERT INTO parvis.keyring (purpose, wrapped) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                            (REF_KEY, self.cipher.wrap(self._original_ref_key(conn))),
                        )
                        wrapped = stored_ref_key(conn)
                    assert wrapped is not None
                self._ref_key = self.cipher.unwrap(wrapped)
            return self._ref_key

    def _original_ref_key(self, conn: Any) -> bytes:
        """The key references were derived with before the keyring held it: from the master secret that wrapped
        the existing author keys (no rotation happened yet, or the keyring would hold it), else the current one."""
        row = conn.execute("SELECT wrapped FROM parvis.author_keys LIMIT 1").fetchone()
        for master in self._masters:
            if row is None or personal_cipher(master).is_current(bytes(row[0])):
                return subkey(master, "parvis/author-refs")
        raise UnreadableSecret("the author keys are wrapped with none of the configured keys")

    def _keys(self, tenant_key: str, refs: set[str], *, create: bool) -> dict[str, bytes]:
        select = "SELECT author_ref, wrapped FROM parvis.author_keys WHERE tenant_id = %s AND author_ref = ANY(%s)"
        with self._pool.connection() as conn:
            found = {r: bytes(w) for r, w in conn.execute(select, (tenant_key, sorted(refs))).fetchall()}
            missing = sorted(refs - found.keys())
            if create and missing:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO parvis.author_keys (tenant_id, author_ref, wrapped) VALUES (%s, %s, %s) "
                        "ON CONFLICT DO NOTHING",
                        [(tenant_key, ref, self.cipher.new_key()[1]) for ref in missing],
                    )
                # Another process may have created some of them first: read back what is stored.
                found |= {r: bytes(w) for r, w in conn.execute(select, (tenant_key, missing)).fetchall()}
        return {ref: self.cipher.unwrap(wrapped) for ref, wrapped in found.items()}

    def seal(self, tenant_key: str, items: list[tuple[str, str]]) -> list[str]:
        keys = self._keys(tenant_key, {ref for ref, _ in items}, create=True)
        return [self.cipher.seal(keys[ref], text) for ref, text in items]

    def open(self, tenant_key: str, items: list[tuple[str, str]]) -> list[str | None]:
        keys = self._keys(tenant_key, {ref for ref, _ in items}, create=False)
        return [self.cipher.open(keys.get(ref), sealed) for ref, sealed in items]

    def erase(self, tenant_key: str, author_ref: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM parvis.author_keys WHERE tenant_id = %s AND author_ref = %s",
                         (tenant_key, author_ref))

    def close(self) -> None:
        self._pool.close()


def personal_cipher(master: bytes, previous: Sequence[bytes] = ()) -> PersonalCipher:
    return PersonalCipher(subkey(master, "parvis/author-keys"), subkey(master, "parvis/author-refs"),
                          [subkey(m, "parvis/author-keys") for m in previous])


REF_KEY = "author-refs"


def stored_ref_key(conn: Any) -> bytes | None:
    """The wrapped key of the author references, from `parvis.keyring` (a psycopg connection)."""
    row = conn.execute("SELECT wrapped FROM parvis.keyring WHERE purpose = %s", (REF_KEY,)).fetchone()
    return None if row is None else bytes(row[0])
