"""Ed25519 keys signing access tokens: generation, publication (JWKS) and rotation.

Lifecycle: a key is *active* (signs and is published); a rotation makes a new key
active and the old one *retiring* until ``retire_at`` (now + overlap), during which
it is still published so that tokens it signed keep verifying; after that it is
*retired* (kept, not published). The overlap must exceed the access-token lifetime.
Keys are shared by every replica through the database; each replica re-reads them
at most every ``reload_seconds`` so a rotation made by one reaches the others.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from joserfc.jwk import OKPKey

from carnet_identity.store import IdentityStore, StoredSigningKey
from carnet_kit.auth import ALGORITHMS
from carnet_kit.errors import FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)

ALGORITHM = ALGORITHMS[0]
CURVE: Final = "Ed25519"
PUBLISHED_STATES = frozenset({"pending", "active", "retiring"})


def utcnow() -> dt.datetime:
    """The current time, timezone-aware (UTC)."""
    return dt.datetime.now(dt.UTC)


def generate_signing_key(now: dt.datetime, *, state: str = "active") -> StoredSigningKey:
    """A new Ed25519 key whose id is its RFC 7638 thumbprint."""
    key = OKPKey.generate_key(CURVE, private=True)
    kid = key.thumbprint()
    public = {**key.as_dict(private=False), "kid": kid, "use": "sig", "alg": ALGORITHM}
    return StoredSigningKey(
        kid=kid,
        algorithm=ALGORITHM,
        curve=CURVE,
        public_jwk=public,
        private_key_pem=key.as_pem(private=True).decode(),
        state=state,
        created_at=now,
        activated_at=now if state == "active" else None,
        retire_at=None,
    )


def effective_state(key: StoredSigningKey, now: dt.datetime) -> str:
    """The key's state at ``now``: a retiring key past its ``retire_at`` is retired."""
    if key.state == "retiring" and key.retire_at is not None and key.retire_at <= now:
        return "retired"
    return key.state


def is_published(key: StoredSigningKey, now: dt.datetime) -> bool:
    """Whether the key belongs in the JWKS at ``now``."""
    return effective_state(key, now) in PUBLISHED_STATES


def jwks_of(keys: list[StoredSigningKey], now: dt.datetime) -> dict[str, Any]:
    """The JWKS of the published keys, active first."""
    published = [key for key in keys if is_published(key, now)]
    published.sort(key=lambda key: (key.state != "active", -key.created_at.timestamp()))
    return {"keys": [dict(key.public_jwk) for key in published]}


@dataclasses.dataclass(frozen=True)
class ActiveKey:
    """The key that signs new tokens."""

    kid: str
    key: OKPKey


def _load_private(stored: StoredSigningKey) -> ActiveKey:
    key = OKPKey.import_key(stored.private_key_pem, parameters={"kid": stored.kid, "use": "sig", "alg": ALGORITHM})
    return ActiveKey(stored.kid, key)


async def ensure_signing_key(store: IdentityStore, now: dt.datetime) -> StoredSigningKey:
    """The active key, generated on first start (one replica does it: advisory lock)."""
    async with store.transaction() as tx:
        await tx.advisory_lock("signing-keys")
        for key in await tx.signing_keys():
            if key.state == "active":
                return key
        created = generate_signing_key(now)
        await tx.insert_signing_key(created)
        log.info("generated the first signing key %s", created.kid)
        return created


async def rotate_signing_key(store: IdentityStore, now: dt.datetime, overlap: dt.timedelta) -> StoredSigningKey:
    """Make a new key active; the previous one stays published for ``overlap``, then retires.

    Tokens signed by the previous key keep verifying until they expire, provided the
    overlap exceeds the access-token lifetime.
    """
    if overlap < dt.timedelta(0):
        raise InvalidArgument("the overlap must not be negative", field="overlap")
    async with store.transaction() as tx:
        await tx.advisory_lock("signing-keys")
        for key in await tx.signing_keys():
            if key.state == "active":
                await tx.set_signing_key_state(key.kid, "retiring", now + overlap)
            elif key.state == "retiring" and effective_state(key, now) == "retired":
                await tx.set_signing_key_state(key.kid, "retired", key.retire_at)
        created = generate_signing_key(now)
        await tx.insert_signing_key(created)
    log.info("rotated signing keys: %s now signs (overlap %s)", created.kid, overlap)
    return created


class KeyRing:
    """Identity's view of its signing keys: the active private key and the published JWKS."""

    def __init__(
        self,
        store: IdentityStore,
        *,
        default_overlap: dt.timedelta,
        reload_seconds: float = 30.0,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._store = store
        self.default_overlap = default_overlap
        self._reload_seconds = reload_seconds
        self._clock = clock
        self._active: ActiveKey | None = None
        self._loaded_at = float("-inf")

    async def start(self) -> None:
        """Make sure a key exists and load it."""
        await ensure_signing_key(self._store, self._clock())
        await self.reload()

    async def reload(self) -> None:
        """Read the active key again (after a rotation, possibly by another replica)."""
        for key in await self._store.signing_keys():
            if key.state == "active":
                self._active = _load_private(key)
                self._loaded_at = time.monotonic()
                return
        raise FailedPrecondition("no active signing key", reason="SIGNING_KEY_MISSING")

    async def active(self) -> ActiveKey:
        """The key to sign with now."""
        if self._active is None or time.monotonic() - self._loaded_at > self._reload_seconds:
            await self.reload()
        assert self._active is not None
        return self._active

    async def jwks(self) -> dict[str, Any]:
        """The published keys, as a JWKS dict."""
        return jwks_of(await self._store.signing_keys(), self._clock())

    async def signing_keys(self) -> list[StoredSigningKey]:
        """Every key, for operators."""
        return await self._store.signing_keys()

    async def rotate(self, overlap: dt.timedelta | None = None) -> StoredSigningKey:
        """Rotate now and start signing with the new key at once."""
        created = await rotate_signing_key(
            self._store, self._clock(), self.default_overlap if overlap is None else overlap
        )
        await self.reload()
        return created
