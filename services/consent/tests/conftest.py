"""A real consent service per test: its own database schema, Redis streams unique to the test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from carnet.consent.v1 import consent_service_pb2_grpc
from carnet_consent.app import ConsentRuntime, build_runtime
from carnet_consent.settings import ConsentSettings
from carnet_consent.store import SCHEMA, ConsentStore
from carnet_kit.config import HostPort
from carnet_kit.db import create_pool
from carnet_kit.redis_client import create_redis
from carnet_kit.testing import TokenFactory, free_port


@pytest.fixture
def consent_settings(database_url: str, redis_url: str) -> ConsentSettings:
    prefix = f"carnet:test:{uuid.uuid4().hex}"
    return ConsentSettings(
        grpc_listen=HostPort("127.0.0.1", free_port()),
        database_url=database_url,
        redis_url=redis_url,
        profile="test",
        events_stream=f"{prefix}:events:consent",
        identity_events_stream=f"{prefix}:events:identity",
        invalidation_stream=f"{prefix}:invalidations:consent",
        # An unreachable identity answers at once: these tests feed identity facts as events.
        identity_addr=HostPort("127.0.0.1", free_port()),
        call_timeout_seconds=1.0,
    )


@pytest.fixture
async def runtime(consent_settings: ConsentSettings, token_factory: TokenFactory) -> AsyncIterator[ConsentRuntime]:
    runtime = await build_runtime(consent_settings, verifier=token_factory.verifier())
    await runtime.app.start()
    await runtime.invalidations.ready.wait()
    yield runtime
    await runtime.app.stop(0)
    client = create_redis(consent_settings.redis_url)
    await client.delete(
        consent_settings.events_stream, consent_settings.identity_events_stream, consent_settings.invalidation_stream
    )
    await client.aclose()


@pytest.fixture
async def stub(runtime: ConsentRuntime) -> AsyncIterator[consent_service_pb2_grpc.ConsentServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.app.port}") as channel:
        yield consent_service_pb2_grpc.ConsentServiceStub(channel)


@pytest.fixture
async def store(database_url: str, runtime: ConsentRuntime, consent_settings: ConsentSettings) -> AsyncIterator[ConsentStore]:
    """The consent store as another replica sees it (its own pool, same streams)."""
    pool = await create_pool(database_url, SCHEMA)
    yield ConsentStore(
        pool, events_stream=consent_settings.events_stream, invalidation_stream=consent_settings.invalidation_stream
    )
    await pool.close()
