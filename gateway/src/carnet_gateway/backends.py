"""Channels and stubs to the five services, and the gateway's own token check."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from carnet.consent.v1 import consent_service_pb2_grpc
from carnet.dossier.v1 import dossier_service_pb2_grpc
from carnet.identity.v1 import identity_service_pb2_grpc
from carnet.imaging.v1 import imaging_service_pb2_grpc
from carnet.notify.v1 import notify_service_pb2_grpc
from carnet_gateway.settings import GatewaySettings
from carnet_kit.auth import TokenVerifier
from carnet_kit.channels import create_channel
from carnet_kit.peers import IDENTITY_IDEMPOTENT, IDENTITY_SERVICE, jwks_fetcher, redis_revocation_check
from carnet_kit.redis_client import create_redis

SERVICES = ("identity", "consent", "dossier", "imaging", "notify")


def _no_token() -> str:
    return ""


@dataclass
class Backends:
    """One channel per service, opened once for the gateway's lifetime."""

    channels: dict[str, grpc.aio.Channel]
    identity: identity_service_pb2_grpc.IdentityServiceAsyncStub
    consent: consent_service_pb2_grpc.ConsentServiceAsyncStub
    dossier: dossier_service_pb2_grpc.DossierServiceAsyncStub
    imaging: imaging_service_pb2_grpc.ImagingServiceAsyncStub
    notify: notify_service_pb2_grpc.NotifyServiceAsyncStub
    verifier: TokenVerifier

    @classmethod
    def open(cls, settings: GatewaySettings) -> Backends:
        """Open the channels (lazily connected) and the token verifier."""
        timeout = settings.call_timeout_seconds
        channels = {
            "identity": create_channel(
                settings.identity_addr, idempotent={IDENTITY_SERVICE: IDENTITY_IDEMPOTENT}, timeout=timeout, token=_no_token
            ),
            "consent": create_channel(settings.consent_addr, timeout=timeout, token=_no_token),
            "dossier": create_channel(
                settings.dossier_addr,
                idempotent={"carnet.dossier.v1.DossierService": ("GetDocument", "ListDocuments")},
                timeout=timeout,
                token=_no_token,
            ),
            "imaging": create_channel(settings.imaging_addr, timeout=timeout, token=_no_token),
            "notify": create_channel(
                settings.notify_addr,
                idempotent={"carnet.notify.v1.NotifyService": ("ListInboxItems",)},
                timeout=timeout,
                token=_no_token,
            ),
        }
        revocation = redis_revocation_check(create_redis(settings.redis_url)) if settings.redis_url else None
        return cls(
            channels=channels,
            identity=identity_service_pb2_grpc.IdentityServiceStub(channels["identity"]),
            consent=consent_service_pb2_grpc.ConsentServiceStub(channels["consent"]),
            dossier=dossier_service_pb2_grpc.DossierServiceStub(channels["dossier"]),
            imaging=imaging_service_pb2_grpc.ImagingServiceStub(channels["imaging"]),
            notify=notify_service_pb2_grpc.NotifyServiceStub(channels["notify"]),
            verifier=TokenVerifier(jwks_fetcher(channels["identity"]), is_revoked=revocation),
        )

    async def health(self, timeout: float = 2.0) -> dict[str, str]:
        """Each service's overall health status name (SERVING, NOT_SERVING, UNREACHABLE…)."""
        result: dict[str, str] = {}
        for name in SERVICES:
            stub = health_pb2_grpc.HealthStub(self.channels[name])
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
                result[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            except grpc.aio.AioRpcError as error:
                result[name] = "UNREACHABLE" if error.code() == grpc.StatusCode.UNAVAILABLE else error.code().name
        return result

    async def close(self) -> None:
        """Close every channel."""
        for channel in self.channels.values():
            await channel.close(None)
