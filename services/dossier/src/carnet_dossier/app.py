"""Assembles the dossier service: pool, migrations, object store, peers, servicer, relay."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet_dossier import profile_store
from carnet_dossier.access_log import seal_legacy_entries
from carnet_dossier.access_log_service import AccessLogService
from carnet_dossier.agenda import AgendaService
from carnet_dossier.documents import DocumentService
from carnet_dossier.keys import HolderKeys
from carnet_dossier.peers import ConsentClient, IdentityClient
from carnet_dossier.profile_service import ProfileService
from carnet_dossier.profile_servicer import profile_entry_to_proto
from carnet_dossier.servicer import SERVICE_NAME, DossierServicer, document_json
from carnet_dossier.settings import DossierSettings
from carnet_dossier.spaces import SpaceEvents, SpacePurger, SpaceService
from carnet_dossier.store import SCHEMA
from carnet_kit.auth import TokenVerifier
from carnet_kit.bootstrap import open_foundations
from carnet_kit.objectstore import object_store_from_settings
from carnet_kit.outbox import OutboxRelay
from carnet_kit.server import GrpcService, ServiceApp

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


def _rewrapper(keys: HolderKeys) -> Callable[[], Coroutine[Any, Any, None]]:
    """At start, rewrap the data keys still wrapped by a retired master key (nothing to do otherwise)."""

    async def rewrap() -> None:
        if not keys.ring.retired:
            return
        done = await keys.rewrap()
        log.info("rewrapped %d data keys under master key %s", done, keys.ring.current.key_id)

    return rewrap


async def build(settings: DossierSettings, *, verifier: TokenVerifier | None = None) -> ServiceApp:
    """The dossier service, ready to start."""
    ring = settings.master_keys()  # before connecting anywhere: a bad key file stops the start at once
    base = await open_foundations(settings, SCHEMA, MIGRATIONS, outbox=True, verifier=verifier)
    blobs = object_store_from_settings(settings)
    consent = ConsentClient(settings)
    keys = HolderKeys(base.pool, ring)
    documents = DocumentService(
        base.pool,
        blobs,
        keys,
        consent,
        IdentityClient(base.identity),
        max_document_bytes=settings.max_document_bytes,
        professional_search_years=settings.professional_search_years,
    )
    sealed = await seal_legacy_entries(base.pool)
    if sealed:
        log.info("gave %d access log entries written before the hash chain their place in it", sealed)

    async def profile_part(holder_id: uuid.UUID) -> dict[str, Any]:
        entries = await profile_store.entries_of_holder(base.pool, holder_id)
        as_json = [
            json_format.MessageToDict(profile_entry_to_proto(e), preserving_proto_field_name=True) for e in entries
        ]
        return {"profile.json": as_json}

    spaces = SpaceService(base.pool, blobs, keys, consent, document_json=document_json, extra_parts=profile_part)
    agenda = AgendaService(base.pool, consent)
    profile = ProfileService(base.pool, consent)
    servicer = DossierServicer(
        documents, AccessLogService(base.pool, consent), spaces=spaces, agenda=agenda, profile=profile
    )
    space_events = SpaceEvents(base.pool, keys).consumer(base.redis, stream=settings.identity_events_stream)
    purger = SpacePurger(base.pool, blobs, interval_seconds=settings.purge_interval_seconds)
    relay = OutboxRelay(base.pool, base.redis, SCHEMA)
    app = ServiceApp(
        name="dossier",
        settings=settings,
        services=[
            GrpcService(SERVICE_NAME, lambda server: pb_grpc.add_DossierServiceServicer_to_server(servicer, server))
        ],
        verifier=base.verifier,
        background=[relay.run, _rewrapper(keys), space_events.run, purger.run, agenda.run_reminders],
        resources=base.resources,
    )
    app.resources.push_async_callback(blobs.close)
    app.resources.push_async_callback(lambda: consent.channel.close(None))
    return app
