"""Assembly of the identity service: storage, keys, token verification, flows, servicer."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from carnet.identity.v1 import identity_service_pb2_grpc
from carnet_identity.clients import ClientCredentialsService
from carnet_identity.directory import (
    DirectoryServices,
    OrganisationDirectory,
    ProfessionalDirectory,
    SoftwareClientRegistry,
    client_token_housekeeping,
    client_token_recorder,
)
from carnet_identity.enrolment import PersonRegistry
from carnet_identity.hashing import SecretHasher
from carnet_identity.jobs import LifecycleJobs, OppositionFollower
from carnet_identity.keys import KeyRing, utcnow
from carnet_identity.lifecycle import Lifecycle, PersonServices
from carnet_identity.login import LoginService
from carnet_identity.notices import NoticeWorker
from carnet_identity.notifier import Notifier, notify_channel
from carnet_identity.oidc import OidcLogin, OidcProvider, OidcSettings
from carnet_identity.persons import PersonDirectory
from carnet_identity.representation import RepresentationService, representation_sweeper
from carnet_identity.servicer import PUBLIC_METHODS, SERVICE_NAME, IdentityServicer
from carnet_identity.sessions import RevocationList, SessionService
from carnet_identity.settings import SCHEMA, IdentitySettings
from carnet_identity.store import MIGRATIONS, IdentityStore
from carnet_identity.store_directory import DirectoryStore
from carnet_identity.store_persons import PersonStore
from carnet_identity.throttle import LoginThrottle
from carnet_identity.tokens import ServiceTokenSource, TokenIssuer
from carnet_kit.auth import TokenVerifier
from carnet_kit.db import create_pool, migrate
from carnet_kit.outbox import OutboxRelay, install_outbox
from carnet_kit.peers import redis_revocation_check
from carnet_kit.redis_client import create_redis
from carnet_kit.server import GrpcService, ServiceApp

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_SECONDS = 3600.0
# Expired challenges and refresh tokens are kept this long (support questions), then purged.
EXPIRED_RETENTION = dt.timedelta(days=1)


async def _oidc_login(
    settings: IdentitySettings,
    resources: contextlib.AsyncExitStack,
    store: IdentityStore,
    sessions: SessionService,
    redis_client: Any,
) -> OidcLogin | None:
    """The OpenID Connect login of professionals, when a provider is configured."""
    oidc_settings = OidcSettings.from_settings(settings)
    if oidc_settings is None:
        return None
    http = httpx.AsyncClient(timeout=10.0)
    resources.push_async_callback(http.aclose)
    return OidcLogin(oidc_settings, OidcProvider(oidc_settings, http), store, sessions, redis_client)


async def prepare_database(settings: IdentitySettings) -> IdentityStore:
    """Open the pool and apply identity's migrations (also used by seed-demo)."""
    pool = await create_pool(
        settings.database_url, SCHEMA, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    try:
        await migrate(pool, SCHEMA, MIGRATIONS)
        # The kit's outbox (events written in the transaction of their change, relayed to Redis).
        await install_outbox(pool, SCHEMA)
    except BaseException:
        await pool.close()
        raise
    return IdentityStore(pool)


def housekeeping(
    store: IdentityStore, interval: float = HOUSEKEEPING_INTERVAL_SECONDS
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A background loop purging expired login challenges and refresh tokens."""

    async def run() -> None:
        while True:
            try:
                challenges, tokens = await store.purge_expired(utcnow() - EXPIRED_RETENTION)
                if challenges or tokens:
                    log.info("purged %d expired login challenges and %d refresh tokens", challenges, tokens)
            except Exception:
                log.exception("housekeeping failed; will retry")
            await asyncio.sleep(interval)

    return run


async def build(settings: IdentitySettings, *, verifier: TokenVerifier | None = None) -> ServiceApp:
    """Everything the identity process serves; ``verifier`` replaces the local one (tests)."""
    services = settings.service_secrets()  # before connecting anywhere: a bad secret stops the start at once
    resources = contextlib.AsyncExitStack()
    try:
        pool_store = await prepare_database(settings)
        resources.push_async_callback(pool_store.close)
        redis_client = create_redis(settings.redis_url)
        resources.push_async_callback(redis_client.aclose)

        keys = KeyRing(pool_store, default_overlap=dt.timedelta(seconds=settings.signing_key_overlap_seconds))
        await keys.start()
        # Identity verifies tokens with its own keys, read locally, plus the Redis revocation list.
        verifier = verifier or TokenVerifier(keys.jwks, is_revoked=redis_revocation_check(redis_client))
        issuer = TokenIssuer(keys)
        hasher = SecretHasher()

        channel = notify_channel(settings)
        resources.push_async_callback(channel.close)
        notifier = Notifier(
            channel,
            ServiceTokenSource(issuer, ttl_seconds=settings.service_token_ttl_seconds),
            timeout=settings.call_timeout_seconds,
        )
        sessions = SessionService(
            pool_store,
            issuer,
            redis_client,
            access_ttl_seconds=settings.access_token_ttl_seconds,
            refresh_ttl_seconds=settings.refresh_token_ttl_seconds,
        )
        login = LoginService(
            pool_store,
            hasher,
            LoginThrottle(
                redis_client,
                max_failures=settings.login_max_failures,
                window_seconds=settings.login_failure_window_seconds,
            ),
            notifier,
            sessions,
            otp_ttl_seconds=settings.otp_ttl_seconds,
            otp_max_attempts=settings.otp_max_attempts,
            address_throttle=LoginThrottle(
                redis_client,
                max_failures=settings.login_max_failures_per_address,
                window_seconds=settings.login_failure_window_seconds,
            ),
        )
        # --- directory and representation
        directory_store = DirectoryStore.sharing(pool_store)
        directory = DirectoryServices(
            professionals=ProfessionalDirectory(directory_store, hasher, sessions),
            organisations=OrganisationDirectory(directory_store),
            clients=SoftwareClientRegistry(directory_store, hasher, sessions),
            representation=RepresentationService(directory_store, sessions),
        )
        # One relay publishes identity's whole outbox (every event of every use case).
        outbox_relay = OutboxRelay(directory_store.pool, redis_client, SCHEMA)
        # --- persons and lifecycle
        person_store = PersonStore.sharing(pool_store)
        lifecycle = Lifecycle(
            person_store,
            pool_store,
            hasher,
            LoginThrottle(
                redis_client,
                max_failures=settings.login_max_failures,
                window_seconds=settings.login_failure_window_seconds,
            ),
            RevocationList(redis_client),
        )
        person_services = PersonServices(PersonRegistry(person_store), lifecycle)
        person_background = [
            NoticeWorker(person_store, notifier).run,
            LifecycleJobs(person_store, lifecycle).run,
            OppositionFollower(person_store, lifecycle).consumer(redis_client).run,
        ]
        servicer = IdentityServicer(
            clients=ClientCredentialsService(
                pool_store,
                hasher,
                issuer,
                access_ttl_seconds=settings.access_token_ttl_seconds,
                on_issued=client_token_recorder(directory_store),
                services=services,
                service_ttl_seconds=settings.service_token_ttl_seconds,
            ),
            login=login,
            sessions=sessions,
            persons=PersonDirectory(pool_store),
            keys=keys,
            verifier=verifier,
            directory=directory,
            person_services=person_services,
            oidc=await _oidc_login(settings, resources, pool_store, sessions, redis_client),
        )
    except BaseException:
        await resources.aclose()
        raise
    service = GrpcService(
        full_name=SERVICE_NAME,
        add_to_server=lambda server: identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server),
        public_methods=PUBLIC_METHODS,
    )
    return ServiceApp(
        name="identity",
        settings=settings,
        services=[service],
        verifier=verifier,
        background=[
            housekeeping(pool_store),
            client_token_housekeeping(directory_store),
            representation_sweeper(directory.representation),
            outbox_relay.run,
            *person_background,
        ],
        resources=resources,
    )
