"""The gRPC face of identity: protobuf requests → domain calls → protobuf responses, nothing else.

Methods of the contract not implemented yet answer UNIMPLEMENTED (see the end of
this module).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, resources_pb2
from carnet_identity import convert
from carnet_identity.clients import ClientCredentialsService
from carnet_identity.keys import KeyRing
from carnet_identity.login import LoginService
from carnet_identity.persons import PersonDirectory
from carnet_identity.sessions import SessionService
from carnet_kit.auth import TokenVerifier, current_principal, require_role

SERVICE_NAME = "carnet.identity.v1.IdentityService"
# Methods that need no token: they are how one gets a token, or how tokens are checked.
PUBLIC_METHODS = frozenset(
    f"/{SERVICE_NAME}/{method}"
    for method in ("ExchangeClientCredentials", "RefreshTokens", "StartLogin", "CompleteLogin", "GetJwks")
)

Context = Any


class IdentityServicer(identity_service_pb2_grpc.IdentityServiceServicer):
    """Implements ``carnet.identity.v1.IdentityService``."""

    def __init__(
        self,
        *,
        clients: ClientCredentialsService,
        login: LoginService,
        sessions: SessionService,
        persons: PersonDirectory,
        keys: KeyRing,
        verifier: TokenVerifier,
    ) -> None:
        self._clients = clients
        self._login = login
        self._sessions = sessions
        self._persons = persons
        self._keys = keys
        self._verifier = verifier

    # ---- tokens

    async def ExchangeClientCredentials(
        self, request: identity_service_pb2.ExchangeClientCredentialsRequest, context: Context
    ) -> identity_service_pb2.TokenSet:
        grant = await self._clients.exchange(request.client_id, request.client_secret, list(request.scopes))
        return convert.token_set(grant)

    async def RefreshTokens(
        self, request: identity_service_pb2.RefreshTokensRequest, context: Context
    ) -> identity_service_pb2.TokenSet:
        grant = await self._sessions.refresh(
            request.refresh_token, acting_for=request.acting_for, organisation_id=request.organisation_id
        )
        return convert.token_set(grant)

    async def RevokeToken(self, request: identity_service_pb2.RevokeTokenRequest, context: Context) -> empty_pb2.Empty:
        await self._sessions.revoke(request.token, request.token_type_hint, current_principal(), self._verifier)
        return empty_pb2.Empty()

    async def GetJwks(
        self, request: identity_service_pb2.GetJwksRequest, context: Context
    ) -> identity_service_pb2.GetJwksResponse:
        return convert.jwks(await self._keys.jwks())

    async def RotateSigningKey(
        self, request: identity_service_pb2.RotateSigningKeyRequest, context: Context
    ) -> resources_pb2.SigningKey:
        require_role(current_principal(), "operator")
        overlap = request.overlap.ToTimedelta() if request.HasField("overlap") else None
        return convert.signing_key(await self._keys.rotate(overlap))

    # ---- login

    async def StartLogin(
        self, request: identity_service_pb2.StartLoginRequest, context: Context
    ) -> identity_service_pb2.StartLoginResponse:
        return convert.start_login_response(await self._login.start_login(request.login, request.password))

    async def CompleteLogin(
        self, request: identity_service_pb2.CompleteLoginRequest, context: Context
    ) -> identity_service_pb2.TokenSet:
        return convert.token_set(await self._login.complete_login(request.challenge_id, request.code))

    # ---- persons

    async def LookupPerson(
        self, request: identity_service_pb2.LookupPersonRequest, context: Context
    ) -> resources_pb2.Person:
        key = request.WhichOneof("key")
        value = str(getattr(request, key)) if key else ""
        return convert.person(await self._persons.lookup(current_principal(), key or "", value))

    async def GetPerson(self, request: identity_service_pb2.GetPersonRequest, context: Context) -> resources_pb2.Person:
        return convert.person(await self._persons.lookup(current_principal(), "person_id", request.person_id))
