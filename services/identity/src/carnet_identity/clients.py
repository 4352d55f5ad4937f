"""OAuth2 client-credentials grant (RFC 6749 §4.4) for software clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from carnet_identity.domain.credentials import grant_scopes
from carnet_identity.domain.directory import OPERATOR_CLIENT_KINDS
from carnet_identity.hashing import SecretHasher
from carnet_identity.sessions import TokenGrant
from carnet_identity.store import IdentityStore
from carnet_identity.tokens import IssuedToken, TokenIssuer
from carnet_kit.auth import Principal
from carnet_kit.errors import Unauthenticated
from carnet_kit.service_tokens import ServiceSecrets

MAX_CLIENT_ID_LENGTH = 64

# Called with each token issued to a client (the directory records it, to revoke it with the client).
TokenIssued = Callable[[str, IssuedToken], Awaitable[None]]


class ClientCredentialsService:
    """Exchanges a client id and secret for an access token (no refresh token, RFC 6749 §4.4.3)."""

    def __init__(
        self,
        store: IdentityStore,
        hasher: SecretHasher,
        issuer: TokenIssuer,
        *,
        access_ttl_seconds: int,
        on_issued: TokenIssued | None = None,
        services: ServiceSecrets | None = None,
        service_ttl_seconds: int = 300,
    ) -> None:
        self._store = store
        self._services = services or ServiceSecrets({})
        self._service_ttl = service_ttl_seconds
        self._on_issued = on_issued
        self._hasher = hasher
        self._issuer = issuer
        self._access_ttl = access_ttl_seconds

    async def exchange(self, client_id: str, client_secret: str, scopes: Sequence[str]) -> TokenGrant:
        """An access token for a client whose secret matches; one answer for unknown client and wrong secret.

        A platform service (its name and secret from configuration, see ``carnet_kit.service_tokens``)
        gets a token of role ``service`` whose subject is its name; no scope, no organisation.
        """
        if client_id in self._services:
            if not self._services.matches(client_id, client_secret):
                raise Unauthenticated("unknown client or wrong secret", reason="CLIENT_CREDENTIALS_INVALID")
            issued = await self._issuer.mint(Principal(subject=client_id, role="service"), self._service_ttl)
            return TokenGrant(issued)
        client = await self._store.client_by_id(client_id) if 0 < len(client_id) <= MAX_CLIENT_ID_LENGTH else None
        secret_matches = await self._hasher.verify(client.secret_hash if client else None, client_secret)
        if client is None or not secret_matches:
            raise Unauthenticated("unknown client or wrong secret", reason="CLIENT_CREDENTIALS_INVALID")
        if client.disabled:
            raise Unauthenticated("this client is disabled", reason="CLIENT_CREDENTIALS_INVALID")
        granted = grant_scopes(client.scopes, scopes)
        principal = Principal(
            subject=client.client_id,
            role="operator" if client.kind in OPERATOR_CLIENT_KINDS else "client",
            client_id=client.client_id,
            organisation_id=str(client.organisation_id) if client.organisation_id else "",
            scopes=granted,
        )
        issued = await self._issuer.mint(principal, self._access_ttl)
        if self._on_issued is not None:
            await self._on_issued(client.client_id, issued)
        return TokenGrant(issued)
