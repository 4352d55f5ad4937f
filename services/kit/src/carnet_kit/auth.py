"""Bearer-token verification against identity's JWKS, and the caller of the current RPC.

Every service verifies the caller's token itself (zero trust inside the platform).
Keys come from identity (``GetJwks``), are cached, and are fetched again when a
token names a key id the cache does not know (key rotation), at most once per
``refresh_interval`` seconds so that forged key ids cannot hammer identity.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from carnet.common.v1 import common_pb2
from carnet_kit.errors import PermissionDenied, Unauthenticated

ISSUER = "carnet-identity"
AUDIENCE = "carnet"
ALGORITHMS = ["Ed25519"]  # RFC 9864 fully-specified EdDSA
CLOCK_SKEW_SECONDS = 30

ROLES = ("holder", "representative", "helper", "professional", "client", "operator", "service")
_ROLE_TO_PROTO = {
    "holder": common_pb2.ROLE_HOLDER,
    "representative": common_pb2.ROLE_REPRESENTATIVE,
    "helper": common_pb2.ROLE_HELPER,
    "professional": common_pb2.ROLE_PROFESSIONAL,
    "client": common_pb2.ROLE_CLIENT,
    "operator": common_pb2.ROLE_OPERATOR,
    "service": common_pb2.ROLE_SERVICE,
}
_PROTO_TO_ROLE = {value: key for key, value in _ROLE_TO_PROTO.items()}


@dataclasses.dataclass(frozen=True)
class Principal:
    """The verified caller of an RPC, read from its access token."""

    subject: str
    role: str
    token_id: str = ""
    profession_code: str = ""
    rpps: str = ""
    organisation_id: str = ""
    client_id: str = ""
    acting_for: str = ""
    scopes: tuple[str, ...] = ()
    expires_at: int = 0

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Principal:
        """Build a principal from verified JWT claims."""
        role = str(claims.get("role", ""))
        if role not in ROLES:
            raise Unauthenticated("token has no valid role", reason="TOKEN_INVALID")
        return cls(
            subject=str(claims.get("sub", "")),
            role=role,
            token_id=str(claims.get("jti", "")),
            profession_code=str(claims.get("profession", "")),
            rpps=str(claims.get("rpps", "")),
            organisation_id=str(claims.get("organisation", "")),
            client_id=str(claims.get("client_id", "")),
            acting_for=str(claims.get("acting_for", "")),
            scopes=tuple(str(claims.get("scope", "")).split()),
            expires_at=int(claims.get("exp", 0)),
        )

    def to_actor(self) -> common_pb2.Actor:
        """The proto form used in requests to consent and in events."""
        return common_pb2.Actor(
            subject=self.subject,
            role=_ROLE_TO_PROTO[self.role],
            profession_code=self.profession_code,
            rpps=self.rpps,
            organisation_id=self.organisation_id,
            client_id=self.client_id,
            acting_for=self.acting_for,
            scopes=list(self.scopes),
        )

    @classmethod
    def from_actor(cls, actor: common_pb2.Actor) -> Principal:
        """The principal described by a proto Actor (as carried in events)."""
        return cls(
            subject=actor.subject,
            role=_PROTO_TO_ROLE.get(actor.role, ""),
            profession_code=actor.profession_code,
            rpps=actor.rpps,
            organisation_id=actor.organisation_id,
            client_id=actor.client_id,
            acting_for=actor.acting_for,
            scopes=tuple(actor.scopes),
        )

    def has_scope(self, scope: str) -> bool:
        """Whether the token grants ``scope``."""
        return scope in self.scopes


def claims_for(principal: Principal, *, token_id: str, issued_at: int, expires_at: int) -> dict[str, Any]:
    """The JWT claims asserting ``principal`` (the inverse of :meth:`Principal.from_claims`)."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": principal.subject,
        "role": principal.role,
        "iat": issued_at,
        "exp": expires_at,
        "jti": token_id,
    }
    for claim, value in (
        ("profession", principal.profession_code),
        ("rpps", principal.rpps),
        ("organisation", principal.organisation_id),
        ("client_id", principal.client_id),
        ("acting_for", principal.acting_for),
        ("scope", " ".join(principal.scopes)),
    ):
        if value:
            claims[claim] = value
    return claims


_current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "carnet_principal", default=None
)
_current_token: contextvars.ContextVar[str] = contextvars.ContextVar("carnet_bearer_token", default="")


def current_principal() -> Principal:
    """The verified caller of the RPC being served; PermissionDenied outside one."""
    principal = _current_principal.get()
    if principal is None:
        raise Unauthenticated("this call needs an access token", reason="TOKEN_MISSING")
    return principal


def optional_principal() -> Principal | None:
    """The verified caller, or None for a public method."""
    return _current_principal.get()


def current_token() -> str:
    """The bearer token of the RPC being served ('' for a public method)."""
    return _current_token.get()


def bind_caller(principal: Principal | None, token: str) -> tuple[contextvars.Token[Principal | None], contextvars.Token[str]]:
    """Make ``principal`` and ``token`` the caller for the code that follows."""
    return _current_principal.set(principal), _current_token.set(token)


def unbind_caller(tokens: tuple[contextvars.Token[Principal | None], contextvars.Token[str]]) -> None:
    """Undo :func:`bind_caller`."""
    _current_principal.reset(tokens[0])
    _current_token.reset(tokens[1])


def require_role(principal: Principal, *roles: str) -> None:
    """PermissionDenied unless the caller has one of ``roles``."""
    if principal.role not in roles:
        raise PermissionDenied(
            f"role {principal.role!r} may not call this", reason="ROLE_NOT_ALLOWED", metadata={"role": principal.role}
        )


def require_scope(principal: Principal, scope: str) -> None:
    """PermissionDenied unless a client token carries ``scope``."""
    if principal.role == "client" and not principal.has_scope(scope):
        raise PermissionDenied(f"the token lacks the scope {scope}", reason="SCOPE_MISSING", metadata={"scope": scope})


JwksFetcher = Callable[[], Awaitable[dict[str, Any]]]
RevocationCheck = Callable[[str], Awaitable[bool]]


class TokenVerifier:
    """Verifies Ed25519-signed access tokens against a cached JWKS."""

    def __init__(
        self,
        fetch_jwks: JwksFetcher,
        *,
        is_revoked: RevocationCheck | None = None,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        refresh_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
    ) -> None:
        self._fetch_jwks = fetch_jwks
        self._is_revoked = is_revoked
        self._issuer = issuer
        self._audience = audience
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._cache_size = cache_size
        self._verified: collections.OrderedDict[str, tuple[Principal, str]] = collections.OrderedDict()
        self._keys: KeySet | None = None
        self._kids: set[str] = set()
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._keys is not None and (not force or now - self._fetched_at < self._refresh_interval):
                return
            jwks = await self._fetch_jwks()
            self._keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            self._kids = {str(key.get("kid", "")) for key in jwks.get("keys", [])}
            self._fetched_at = now

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; Unauthenticated otherwise.

        A token verified before is not verified again until it expires (the signature
        check is most of the cost of a call); its key must still be published, and
        the revocation list is asked every time.
        """
        cached = self._verified.get(token)
        if cached is not None:
            principal, kid = cached
            if kid in self._kids and principal.expires_at + CLOCK_SKEW_SECONDS >= self._clock():
                self._verified.move_to_end(token)
                await self._check_revocation(principal)
                return principal
            del self._verified[token]
        principal, kid = await self._verify_signed(token)
        await self._check_revocation(principal)
        self._verified[token] = (principal, kid)
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    async def _check_revocation(self, principal: Principal) -> None:
        if self._is_revoked is not None and principal.token_id and await self._is_revoked(principal.token_id):
            raise Unauthenticated("access token was revoked", reason="TOKEN_REVOKED")

    async def _verify_signed(self, token: str) -> tuple[Principal, str]:
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("malformed access token", reason="TOKEN_INVALID") from exc
        kid = str(header.get("kid", ""))
        if self._keys is None or kid not in self._kids:
            await self._refresh(force=True)
        if kid not in self._kids or self._keys is None:
            raise Unauthenticated("access token signed by an unknown key", reason="TOKEN_INVALID")
        try:
            decoded = jwt.decode(token, self._keys, algorithms=ALGORITHMS)
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("access token signature is invalid", reason="TOKEN_INVALID") from exc
        claims = decoded.claims
        now = self._clock()
        if claims.get("iss") != self._issuer:
            raise Unauthenticated("access token has the wrong issuer", reason="TOKEN_INVALID")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self._audience not in audiences:
            raise Unauthenticated("access token has the wrong audience", reason="TOKEN_INVALID")
        if not isinstance(claims.get("exp"), int) or claims["exp"] + CLOCK_SKEW_SECONDS < now:
            raise Unauthenticated("access token has expired", reason="TOKEN_EXPIRED")
        if isinstance(claims.get("nbf"), int) and claims["nbf"] - CLOCK_SKEW_SECONDS > now:
            raise Unauthenticated("access token is not valid yet", reason="TOKEN_INVALID")
        return Principal.from_claims(claims), kid


def revoked_key(token_id: str) -> str:
    """The Redis key that marks a token id as revoked (set by identity with a TTL)."""
    return f"carnet:identity:revoked:{token_id}"
