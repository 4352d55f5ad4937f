"""argon2id hashing of passwords, client secrets and codes, off the event loop.

Verification of an unknown account runs against a dummy hash, so that "no such
account" and "wrong password" take the same time (no account enumeration by timing).
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class SecretHasher:
    """Hashes and verifies secrets with argon2id (RFC 9106 parameters by default)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    async def hash(self, secret: str) -> str:
        """An argon2id hash of ``secret``."""
        return await asyncio.to_thread(self._hasher.hash, secret)

    def hash_now(self, secret: str) -> str:
        """The same, on the calling thread (for seeding and tests)."""
        return self._hasher.hash(secret)

    def _verify(self, stored: str | None, secret: str) -> bool:
        if stored is None:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
            self._check(self._dummy_hash, secret)
            return False
        return self._check(stored, secret)

    def _check(self, stored: str, secret: str) -> bool:
        try:
            return self._hasher.verify(stored, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, secret: str) -> bool:
        """Whether ``secret`` matches ``stored``; with no stored hash, spend the same time and say no."""
        return await asyncio.to_thread(self._verify, stored, secret)

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with weaker parameters than today's."""
        return self._hasher.check_needs_rehash(stored)
