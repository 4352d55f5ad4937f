"""Bearer authentication at the edge: the gateway checks tokens, services decide access."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from carnet_kit.auth import Principal
from carnet_kit.errors import Unauthenticated

bearer_scheme = HTTPBearer(auto_error=False, description="An access token from /oauth/token or /api/v1/auth/otp")


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of a request and the token to forward."""

    principal: Principal
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata carrying the caller's token to the services."""
        return (("authorization", f"Bearer {self.token}"),)


async def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    """The verified caller; 401 problem without a valid bearer token."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthenticated("this endpoint needs a bearer access token", reason="TOKEN_MISSING")
    principal = await request.app.state.backends.verifier.verify(credentials.credentials)
    return Caller(principal, credentials.credentials)
