"""Assembles the dossier service: pool, migrations, object store, peers, servicer, relay."""

from __future__ import annotations

from pathlib import Path

from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet_dossier.documents import DocumentService
from carnet_dossier.peers import ConsentClient, IdentityClient
from carnet_dossier.servicer import SERVICE_NAME, DossierServicer
from carnet_dossier.settings import DossierSettings
from carnet_dossier.store import SCHEMA
from carnet_kit.auth import TokenVerifier
from carnet_kit.db import create_pool, migrate
from carnet_kit.objectstore import object_store_from_settings
from carnet_kit.outbox import OutboxRelay, install_outbox
from carnet_kit.peers import identity_channel, remote_verifier
from carnet_kit.redis_client import create_redis
from carnet_kit.server import GrpcService, ServiceApp

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: DossierSettings, *, verifier: TokenVerifier | None = None) -> ServiceApp:
    """The dossier service, ready to start."""
    pool = await create_pool(settings.database_url, SCHEMA, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    try:
        await migrate(pool, SCHEMA, MIGRATIONS)
        await install_outbox(pool, SCHEMA)
    except BaseException:
        await pool.close()
        raise
    redis = create_redis(settings.redis_url)
    blobs = object_store_from_settings(settings)
    identity = identity_channel(settings)
    consent = ConsentClient(settings)
    documents = DocumentService(
        pool,
        blobs,
        consent,
        IdentityClient(identity),
        max_document_bytes=settings.max_document_bytes,
        professional_search_years=settings.professional_search_years,
    )
    # The methods of later issues are inherited from the generated base (UNIMPLEMENTED).
    servicer = DossierServicer(documents)  # type: ignore[abstract]
    relay = OutboxRelay(pool, redis, SCHEMA)
    app = ServiceApp(
        name="dossier",
        settings=settings,
        services=[GrpcService(SERVICE_NAME, lambda server: pb_grpc.add_DossierServiceServicer_to_server(servicer, server))],
        verifier=verifier or remote_verifier(identity, redis),
        background=[relay.run],
    )
    app.resources.push_async_callback(pool.close)
    app.resources.push_async_callback(redis.aclose)
    app.resources.push_async_callback(blobs.close)
    app.resources.push_async_callback(lambda: identity.close(None))
    app.resources.push_async_callback(lambda: consent.channel.close(None))
    return app
