"""Assembles the imaging service: pool, migrations, identity, the AE registry, the gRPC servicer and the
DICOM SCP."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc

from carnet.imaging.v1 import imaging_service_pb2_grpc as pb_grpc
from carnet_imaging.dicom import DicomServer
from carnet_imaging.ingest import Ingest
from carnet_imaging.matching import PatientMatcher
from carnet_imaging.peers import IdentityDirectory
from carnet_imaging.quarantine import Quarantine
from carnet_imaging.registry import AeRegistry, CallingAeTitles
from carnet_imaging.servicer import ImagingServicer
from carnet_imaging.settings import ImagingSettings
from carnet_kit.auth import TokenVerifier
from carnet_kit.bootstrap import open_foundations
from carnet_kit.data_keys import DataKeys
from carnet_kit.objectstore import object_store_from_settings
from carnet_kit.server import GrpcService, ServiceApp
from carnet_kit.service_tokens import ServiceTokens

SCHEMA = "imaging"
SERVICE_NAME = "carnet.imaging.v1.ImagingService"
SERVICE_CLIENT_NAME = "imaging"
"""The name imaging's service secret is filed under at identity."""
MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


async def build(settings: ImagingSettings, *, verifier: TokenVerifier | None = None) -> ServiceApp:
    """The imaging service, ready to start."""
    ring = settings.master_keys()  # before connecting anywhere: a bad key file or secret stops the start at once
    service_secret = settings.service_secret()
    base = await open_foundations(settings, SCHEMA, MIGRATIONS, outbox=True, verifier=verifier)
    tokens = ServiceTokens(base.identity, SERVICE_CLIENT_NAME, service_secret, timeout=settings.call_timeout_seconds)
    identity = IdentityDirectory(base.identity, tokens, timeout=settings.call_timeout_seconds)
    known = CallingAeTitles()
    registry = AeRegistry(base.pool, identity, known)
    await registry.refresh()
    blobs = object_store_from_settings(settings)
    base.resources.push_async_callback(blobs.close)
    keys = DataKeys(base.pool, ring, what="DICOM object", cache_seconds=settings.key_cache_seconds)
    matcher = PatientMatcher(base.pool, identity, cache_seconds=settings.identity_cache_seconds)
    ingest = Ingest(base.pool, blobs, keys, matcher)
    quarantine = Quarantine(base.pool, blobs, keys, ingest, identity)
    servicer = ImagingServicer(registry, quarantine)  # type: ignore[abstract]
    dicom = DicomServer(
        settings.dicom_listen,
        settings.dicom_ae_title,
        known,
        max_associations=settings.dicom_max_associations,
        acse_timeout=settings.dicom_acse_timeout_seconds,
        dimse_timeout=settings.dicom_dimse_timeout_seconds,
        network_timeout=settings.dicom_network_timeout_seconds,
    )
    dicom.accept_storage(ingest)

    async def run_dicom() -> None:
        await asyncio.to_thread(dicom.start, asyncio.get_running_loop())
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(dicom.stop)

    async def refresh_registry() -> None:
        # Changes made by another replica reach this one within one period.
        while True:
            await asyncio.sleep(settings.ae_refresh_seconds)
            try:
                await registry.refresh()
            except Exception:
                log.exception("could not reload the AE registry; the previous copy stays in use")

    def add(server: grpc.aio.Server) -> None:
        pb_grpc.add_ImagingServiceServicer_to_server(servicer, server)

    return ServiceApp(
        name="imaging",
        settings=settings,
        services=[GrpcService(SERVICE_NAME, add)],
        verifier=base.verifier,
        background=[run_dicom, refresh_registry],
        resources=base.resources,
    )
