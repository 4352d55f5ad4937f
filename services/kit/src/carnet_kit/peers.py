"""Wiring to other services that every service needs: identity's JWKS and revocations."""

from __future__ import annotations

from typing import Any

import grpc
import redis.asyncio as redis
from google.protobuf import json_format

from carnet.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from carnet_kit.auth import RevocationCheck, TokenVerifier, revoked_key
from carnet_kit.channels import create_channel
from carnet_kit.settings import ServiceSettings

IDENTITY_SERVICE = "carnet.identity.v1.IdentityService"
# Read-only identity methods that are safe to retry on UNAVAILABLE.
IDENTITY_IDEMPOTENT = ("GetJwks", "LookupPerson", "GetPerson", "ListPersons", "GetProfessional", "GetSoftwareClient")


def identity_channel(settings: ServiceSettings) -> grpc.aio.Channel:
    """A channel to identity with retries for its read-only methods."""
    return create_channel(
        settings.identity_addr,
        idempotent={IDENTITY_SERVICE: IDENTITY_IDEMPOTENT},
        timeout=settings.call_timeout_seconds,
    )


def jwks_fetcher(channel: grpc.aio.Channel, timeout: float = 5.0) -> Any:
    """A fetcher of identity's published signing keys as a JWKS dict."""
    stub = identity_service_pb2_grpc.IdentityServiceStub(channel)

    async def fetch() -> dict[str, Any]:
        response = await stub.GetJwks(identity_service_pb2.GetJwksRequest(), timeout=timeout)
        return {"keys": [json_format.MessageToDict(key, preserving_proto_field_name=True) for key in response.keys]}

    return fetch


def redis_revocation_check(client: redis.Redis) -> RevocationCheck:
    """Token ids revoked by identity are kept in Redis until the token would expire."""

    async def is_revoked(token_id: str) -> bool:
        return bool(await client.exists(revoked_key(token_id)))

    return is_revoked


def remote_verifier(channel: grpc.aio.Channel, client: redis.Redis) -> TokenVerifier:
    """A verifier for services other than identity."""
    return TokenVerifier(jwks_fetcher(channel), is_revoked=redis_revocation_check(client))
