"""Wiring of the consent service: pool, migrations, access matrix, verifier, gRPC service."""

from __future__ import annotations

from pathlib import Path

from carnet.consent.v1 import consent_service_pb2, consent_service_pb2_grpc
from carnet_consent.access_matrix import load_access_matrices
from carnet_consent.servicer import ConsentServicer
from carnet_consent.settings import ConsentSettings
from carnet_consent.store import SCHEMA, ConsentStore
from carnet_kit.auth import TokenVerifier
from carnet_kit.bootstrap import open_foundations
from carnet_kit.server import GrpcService, ServiceApp

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = consent_service_pb2.DESCRIPTOR.services_by_name["ConsentService"].full_name


async def build(settings: ConsentSettings, *, verifier: TokenVerifier | None = None) -> ServiceApp:
    """Everything the consent process runs; a bad access matrix stops it here."""
    matrices = load_access_matrices()
    base = await open_foundations(settings, SCHEMA, MIGRATIONS, verifier=verifier)
    # The methods of later issues answer UNIMPLEMENTED through the generated base class.
    servicer = ConsentServicer(ConsentStore(base.pool), matrices)  # type: ignore[abstract]
    service = GrpcService(
        full_name=SERVICE_NAME,
        add_to_server=lambda server: consent_service_pb2_grpc.add_ConsentServiceServicer_to_server(servicer, server),
    )
    return ServiceApp(
        name="consent", settings=settings, services=[service], verifier=base.verifier, resources=base.resources
    )
