"""Assembles the imaging service: pool, migrations, the gRPC servicer and the DICOM SCP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from carnet.imaging.v1 import imaging_service_pb2_grpc as pb_grpc
from carnet_imaging.dicom import DicomServer
from carnet_imaging.settings import ImagingSettings
from carnet_kit.auth import TokenVerifier
from carnet_kit.db import create_pool, migrate
from carnet_kit.peers import identity_channel, remote_verifier
from carnet_kit.redis_client import create_redis
from carnet_kit.server import GrpcService, ServiceApp

SCHEMA = "imaging"
SERVICE_NAME = "carnet.imaging.v1.ImagingService"
MIGRATIONS = Path(__file__).parent / "migrations"


class ImagingServicer(pb_grpc.ImagingServiceServicer):
    """The imaging API; its methods arrive with the imaging issue and answer UNIMPLEMENTED until then."""


async def build(settings: ImagingSettings, *, verifier: TokenVerifier | None = None) -> ServiceApp:
    """The imaging service, ready to start."""
    pool = await create_pool(settings.database_url, SCHEMA, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    try:
        await migrate(pool, SCHEMA, MIGRATIONS)
    except BaseException:
        await pool.close()
        raise
    redis = create_redis(settings.redis_url)
    identity = identity_channel(settings)
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
        verifier=verifier or remote_verifier(identity, redis),
        background=[run_dicom],
    )
    app.resources.push_async_callback(pool.close)
    app.resources.push_async_callback(redis.aclose)
    app.resources.push_async_callback(lambda: identity.close(None))
    return app
