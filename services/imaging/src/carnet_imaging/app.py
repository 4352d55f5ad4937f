"""Assembles the imaging service: pool, migrations, the gRPC servicer and the DICOM SCP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from carnet.imaging.v1 import imaging_service_pb2_grpc as pb_grpc
from carnet_imaging.dicom import DicomServer
from carnet_imaging.settings import ImagingSettings
from carnet_kit.auth import TokenVerifier
from carnet_kit.bootstrap import open_foundations
from carnet_kit.server import GrpcService, ServiceApp

SCHEMA = "imaging"
SERVICE_NAME = "carnet.imaging.v1.ImagingService"
MIGRATIONS = Path(__file__).parent / "migrations"


class ImagingServicer(pb_grpc.ImagingServiceServicer):
    """The imaging API; its methods arrive with the imaging issue and answer UNIMPLEMENTED until then."""


async def build(settings: ImagingSettings, *, verifier: TokenVerifier | None = None) -> ServiceApp:
    """The imaging service, ready to start."""
    base = await open_foundations(settings, SCHEMA, MIGRATIONS, verifier=verifier)
    servicer = ImagingServicer()  # type: ignore[abstract]
    dicom = DicomServer(settings.dicom_listen, settings.dicom_ae_title)

    async def run_dicom() -> None:
        await asyncio.to_thread(dicom.start)
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(dicom.stop)

    def add(server: grpc.aio.Server) -> None:
        pb_grpc.add_ImagingServiceServicer_to_server(servicer, server)

    app = ServiceApp(
        name="imaging",
        settings=settings,
        services=[GrpcService(SERVICE_NAME, add)],
        verifier=base.verifier,
        background=[run_dicom],
        resources=base.resources,
    )
    return app
