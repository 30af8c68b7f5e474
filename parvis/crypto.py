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
