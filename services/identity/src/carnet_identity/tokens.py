"""Minting access tokens: Ed25519-signed JWTs with the claims the kit verifies.

Claims (kit README): ``iss=carnet-identity``, ``aud=carnet``, ``sub``, ``role``,
``profession``, ``rpps``, ``organisation``, ``client_id``, ``acting_for``, ``scope``,
``jti``, ``exp`` (and ``iat``); empty optional claims are left out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable

from joserfc import jwt

from carnet_identity.keys import ALGORITHM, KeyRing, utcnow
from carnet_kit.auth import Principal, claims_for

SERVICE_SUBJECT = "identity"
# A cached service token is replaced when it has less than this left to live.
SERVICE_TOKEN_MARGIN = dt.timedelta(seconds=60)


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    """A signed access token and what it says."""

    token: str
    principal: Principal
    expires_at: dt.datetime
    ttl_seconds: int

    @property
    def token_id(self) -> str:
        """The token's ``jti``."""
        return self.principal.token_id


class TokenIssuer:
    """Signs access tokens with identity's active key."""

    def __init__(self, keys: KeyRing, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._keys = keys
        self._clock = clock

    async def mint(self, principal: Principal, ttl_seconds: int) -> IssuedToken:
        """A new access token for ``principal``, valid ``ttl_seconds``."""
        active = await self._keys.active()
        issued_at = int(self._clock().timestamp())
        expires_at = issued_at + ttl_seconds
        token_id = uuid.uuid4().hex
        stamped = dataclasses.replace(principal, token_id=token_id, expires_at=expires_at)
        claims = claims_for(stamped, token_id=token_id, issued_at=issued_at, expires_at=expires_at)
        token = jwt.encode(
            {"alg": ALGORITHM, "kid": active.kid, "typ": "JWT"}, claims, active.key, algorithms=[ALGORITHM]
        )
        return IssuedToken(token, stamped, dt.datetime.fromtimestamp(expires_at, dt.UTC), ttl_seconds)


class ServiceTokenSource:
    """Identity's own service token (role ``service``, sub ``identity``) for calls to other services."""

    def __init__(self, issuer: TokenIssuer, *, ttl_seconds: int, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._issuer = issuer
        self._ttl = ttl_seconds
        self._clock = clock
        self._current: IssuedToken | None = None

    async def token(self) -> str:
        """A valid service token, minted again shortly before the previous one expires."""
        current = self._current
        if current is None or current.expires_at - self._clock() < SERVICE_TOKEN_MARGIN:
            current = await self._issuer.mint(Principal(subject=SERVICE_SUBJECT, role="service"), self._ttl)
            self._current = current
        return current.token
