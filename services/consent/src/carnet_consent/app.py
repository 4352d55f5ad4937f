"""Wiring of the consent service: pool, migrations, outbox, facts cache, event readers, gRPC service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from carnet.consent.v1 import consent_service_pb2, consent_service_pb2_grpc
from carnet_consent.access_matrix import load_access_matrices
from carnet_consent.events import IdentityFactsConsumer, InvalidationListener
from carnet_consent.facts import FactsCache
from carnet_consent.identity_client import IdentityPersons, IdentityProfessionals
from carnet_consent.servicer import ConsentServicer
from carnet_consent.settings import ConsentSettings
from carnet_consent.store import SCHEMA, ConsentStore
from carnet_kit.auth import TokenVerifier
from carnet_kit.bootstrap import open_foundations
from carnet_kit.outbox import OutboxRelay
from carnet_kit.server import GrpcService, ServiceApp

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = consent_service_pb2.DESCRIPTOR.services_by_name["ConsentService"].full_name


@dataclass(frozen=True)
class ConsentRuntime:
    """The parts of a running consent that tests and benchmarks look into."""

    app: ServiceApp
    store: ConsentStore
    cache: FactsCache
    invalidations: InvalidationListener


async def build(settings: ConsentSettings, *, verifier: TokenVerifier | None = None) -> ServiceApp:
    """Everything the consent process runs; a bad access matrix stops it here."""
    return (await build_runtime(settings, verifier=verifier)).app


async def build_runtime(settings: ConsentSettings, *, verifier: TokenVerifier | None = None) -> ConsentRuntime:
    """The service app and its inner parts."""
    matrices = load_access_matrices()
    base = await open_foundations(settings, SCHEMA, MIGRATIONS, outbox=True, verifier=verifier)
    store = ConsentStore(
        base.pool, events_stream=settings.events_stream, invalidation_stream=settings.invalidation_stream
    )
    cache = FactsCache(store.load_facts, ttl_seconds=settings.facts_ttl_seconds, max_holders=settings.facts_max_holders)
    servicer = ConsentServicer(
        store,
        matrices,
        cache=cache,
        person_window=IdentityPersons(base.identity).window,
        professional_for_rpps=IdentityProfessionals(base.identity).id_for_rpps,
    )
    relay = OutboxRelay(base.pool, base.redis, SCHEMA)
    facts_consumer = IdentityFactsConsumer(store, cache).consumer(base.redis, stream=settings.identity_events_stream)
    invalidations = InvalidationListener(
        base.redis,
        cache,
        streams=(settings.events_stream, settings.invalidation_stream, settings.identity_events_stream),
    )
    service = GrpcService(
        full_name=SERVICE_NAME,
        add_to_server=lambda server: consent_service_pb2_grpc.add_ConsentServiceServicer_to_server(servicer, server),
    )
    app = ServiceApp(
        name="consent",
        settings=settings,
        services=[service],
        verifier=base.verifier,
        background=[relay.run, facts_consumer.run, invalidations.run],
        resources=base.resources,
    )
    return ConsentRuntime(app, store, cache, invalidations)
