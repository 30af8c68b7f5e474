"""Per-author keys for personal data (crypto-shredding): sealing, and opening with a key from the key table.

Each commenter of a tenant has a random data key, stored wrapped (AES-GCM) under a key derived from the master
secret in `parvis.author_keys`. Destroying the row makes everything sealed with it unreadable, in the events
and in any copy of them, while the events' bytes (and so the history's hash chain) stay as they were.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ERASED = "[erased]"
_PREFIX = "p1:"


def author_ref(ref_key: bytes, tenant_key: str, handle: str) -> str:
    """A keyed digest of a handle: the same author gives the same reference, which reveals nothing."""
    message = f"{tenant_key}\n{handle.strip().lower()}".encode()
    return hmac.new(ref_key, message, hashlib.sha256).hexdigest()[:40]


class PersonalCipher:
    """Wraps data keys, seals and opens personal data; `kek` wraps keys, `ref_key` pseudonymises handles.

    `previous_keks` (derived from PARVIS_PREVIOUS_SECRET_KEYS) still unwrap what they wrapped, until
    `parvis secrets rotate` has wrapped every key again under `kek`."""

    def __init__(self, kek: bytes, ref_key: bytes, previous_keks: Sequence[bytes] = ()) -> None:
        self._kek = AESGCM(kek)
        self._previous = [AESGCM(k) for k in previous_keks]
        self._ref_key = ref_key

    def author_ref(self, tenant_key: str, handle: str) -> str:
        return author_ref(self._ref_key, tenant_key, handle)

    def new_key(self) -> tuple[bytes, bytes]:
        """(data key, the same wrapped for storage)."""
        key = AESGCM.generate_key(bit_length=256)
        return key, self.wrap(key)

    def wrap(self, key: bytes) -> bytes:
        """A key wrapped under the current key-encryption key."""
        nonce = os.urandom(12)
        return nonce + self._kek.encrypt(nonce, key, None)

    def unwrap(self, wrapped: bytes) -> bytes:
        """The key, unwrapped with the current key-encryption key or else a previous one (InvalidTag: none)."""
        for kek in (self._kek, *self._previous):
            try:
                return kek.decrypt(wrapped[:12], wrapped[12:], None)
            except InvalidTag:
                continue
        raise InvalidTag

    def is_current(self, wrapped: bytes) -> bool:
        """Whether the current key-encryption key alone unwraps this (rotation is done for it)."""
        try:
            self._kek.decrypt(wrapped[:12], wrapped[12:], None)
        except InvalidTag:
            return False
        return True

    @staticmethod
    def seal(key: bytes, plaintext: str) -> str:
        nonce = os.urandom(12)
        return _PREFIX + base64.urlsafe_b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), None)).decode()

    @staticmethod
    def open(key: bytes | None, sealed: str) -> str | None:
        """The plaintext, or None when the key is gone (or the value is not sealed with it)."""
        if key is None or not sealed.startswith(_PREFIX):
            return None
        blob = base64.urlsafe_b64decode(sealed[len(_PREFIX):])
        try:
            return AESGCM(key).decrypt(blob[:12], blob[12:], None).decode()
        except InvalidTag:
            return None


async def fetch_keys(conn: asyncpg.Connection, cipher: PersonalCipher, tenant_refs: Sequence[tuple[str, str]]
                     ) -> Mapping[tuple[str, str], bytes]:
    """The data keys of (tenant, author_ref) pairs that still have one, in one query."""
    if not tenant_refs:
        return {}
    rows = await conn.fetch(
        "SELECT tenant_id, author_ref, wrapped FROM parvis.author_keys "
        "WHERE (tenant_id, author_ref) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [t for t, _ in tenant_refs],
        [r for _, r in tenant_refs],
    )
    return {(r["tenant_id"], r["author_ref"]): cipher.unwrap(bytes(r["wrapped"])) for r in rows}
