"""Login throttling: failed password checks counted in Redis, per account and per address.

An unknown login is counted under a digest of the login itself, so unknown and known
accounts are throttled alike and the answer reveals nothing about existence. Failures
are also counted per client address (as the gateway saw it), with a higher ceiling, so
one address spraying passwords over many logins is stopped too.
"""

from __future__ import annotations

import hashlib

import redis.asyncio as redis
from redis.exceptions import RedisError

from carnet_kit.errors import ResourceExhausted, Unavailable

KEY_PREFIX = "carnet:identity:login-failures:"


def throttle_subject_for_account(kind: str, account_id: str) -> str:
    """The throttling subject of a known account."""
    return f"{kind}:{account_id}"


def throttle_subject_for_unknown_login(login: str) -> str:
    """The throttling subject of a login that names no account."""
    return "unknown:" + hashlib.sha256(login.encode()).hexdigest()[:32]


def throttle_subject_for_address(address: str) -> str:
    """The throttling subject of a client address (digested: no address is kept in clear)."""
    return "address:" + hashlib.sha256(address.strip().lower().encode()).hexdigest()[:32]


class LoginThrottle:
    """At most ``max_failures`` failed logins per subject within ``window_seconds``."""

    def __init__(self, client: redis.Redis, *, max_failures: int, window_seconds: int) -> None:
        self._redis = client
        self._max_failures = max_failures
        self._window = window_seconds

    @staticmethod
    def key(subject: str) -> str:
        """The Redis key counting a subject's failures."""
        return KEY_PREFIX + subject

    async def ensure_allowed(self, subject: str) -> None:
        """RESOURCE_EXHAUSTED ``LOGIN_THROTTLED`` while the subject has too many recent failures."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(self.key(subject))
                pipe.ttl(self.key(subject))
                raw, ttl = await pipe.execute()
        except RedisError as exc:
            raise Unavailable("login throttling is unavailable", reason="THROTTLE_UNAVAILABLE") from exc
        if raw is not None and int(raw) >= self._max_failures:
            retry_after = max(int(ttl), 1)
            raise ResourceExhausted(
                "too many failed logins; try again later",
                reason="LOGIN_THROTTLED",
                metadata={"retry_after_seconds": str(retry_after)},
            )

    async def record_failure(self, subject: str) -> None:
        """Count one failure; the window starts at the first failure."""
        key = self.key(subject)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(key, 0, ex=self._window, nx=True)
                pipe.incr(key)
                await pipe.execute()
        except RedisError as exc:
            raise Unavailable("login throttling is unavailable", reason="THROTTLE_UNAVAILABLE") from exc

    async def reset(self, subject: str) -> None:
        """Forget the failures after a successful login."""
        try:
            await self._redis.delete(self.key(subject))
        except RedisError as exc:
            raise Unavailable("login throttling is unavailable", reason="THROTTLE_UNAVAILABLE") from exc
