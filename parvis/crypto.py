"""Secrets: field encryption (AES-GCM), password hashing (argon2id), subkeys (HKDF)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from projections.personal import PersonalCipher

_PREFIX = "v1:"


def subkey(master: bytes, purpose: str, length: int = 32) -> bytes:
    """A key for one purpose, derived from the master secret."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode()).derive(master)


class SecretBox:
    """Seals secrets for storage in events and read models; implements the domain's Secrets port."""

    def __init__(self, master: bytes) -> None:
        self._aead = AESGCM(subkey(master, "parvis/fields"))
        self._hasher = PasswordHasher()
        self._dummy = self._hasher.hash("parvis-dummy-password")

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        blob = nonce + self._aead.encrypt(nonce, plaintext.encode(), None)
        return _PREFIX + base64.urlsafe_b64encode(blob).decode()

    def open(self, sealed: str) -> str:
        if not sealed.startswith(_PREFIX):
            raise ValueError("not a sealed value")
        blob = base64.urlsafe_b64decode(sealed[len(_PREFIX) :])
        return self._aead.decrypt(blob[:12], blob[12:], None).decode()

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


def digest(secret: str) -> str:
    """A digest for high-entropy secrets such as API keys (no need for a slow hash)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


class AuthorVault:
    """The domain's PersonalData port: per-author data keys in `parvis.author_keys` (crypto-shredding)."""

    def __init__(self, database_url: str, master: bytes, pool_size: int = 2) -> None:
        from psycopg_pool import ConnectionPool

        self.cipher = personal_cipher(master)
        self._pool = ConnectionPool(database_url, min_size=1, max_size=pool_size, open=True,
                                    kwargs={"autocommit": True})

    def author_ref(self, tenant_key: str, handle: str) -> str:
        return self.cipher.author_ref(tenant_key, handle)

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


def personal_cipher(master: bytes) -> PersonalCipher:
    return PersonalCipher(subkey(master, "parvis/author-keys"), subkey(master, "parvis/author-refs"))
