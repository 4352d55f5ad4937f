"""Fixtures of dossier's service tests.

The dossier app runs in-process on a free port against the real PostgreSQL and Redis,
with a filesystem object store in a temporary directory; it asks the real consent
service, also started in-process, trusting the same token factory. Identity is
pointed at a port nobody serves: tests name holders by ``holder_id``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from carnet.dossier.v1 import dossier_service_pb2_grpc as pb_grpc
from carnet_consent.app import build as build_consent
from carnet_consent.settings import ConsentSettings
from carnet_dossier.app import build as build_dossier
from carnet_dossier.settings import DossierSettings
from carnet_kit.config import HostPort, load
from carnet_kit.crypto import new_master_key_line
from carnet_kit.db import create_pool
from carnet_kit.server import ServiceApp
from carnet_kit.testing import TokenFactory, free_port

AppFactory = Callable[..., contextlib.AbstractAsyncContextManager[ServiceApp]]


@pytest.fixture
async def consent_app(database_url: str, redis_url: str, token_factory: TokenFactory) -> AsyncIterator[ServiceApp]:
    """The real consent service, trusting the test token factory."""
    settings = ConsentSettings(
        grpc_listen=HostPort("127.0.0.1", free_port()), database_url=database_url, redis_url=redis_url, profile="test"
    )
    app = await build_consent(settings, verifier=token_factory.verifier())
    await app.start()
    yield app
    await app.stop(0)


@pytest.fixture
def blob_dir(tmp_path: Path) -> Path:
    """Where dossier's filesystem object store keeps the documents' content."""
    return tmp_path / "blobs"


@pytest.fixture
def identity_port() -> int:
    """A port no identity service listens on."""
    return free_port()


@pytest.fixture
def master_key_file(tmp_path: Path) -> Path:
    """A fresh master key ring with one key, ``k1``."""
    path = tmp_path / "master-keys"
    path.write_text(new_master_key_line("k1") + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def dossier_environ(
    database_url: str,
    redis_url: str,
    consent_app: ServiceApp,
    blob_dir: Path,
    identity_port: int,
    master_key_file: Path,
) -> dict[str, str]:
    """The ``CARNET_*`` variables the dossier process gets."""
    return {
        "CARNET_DATABASE_URL": database_url,
        "CARNET_REDIS_URL": redis_url,
        "CARNET_PROFILE": "test",
        "CARNET_CONSENT_ADDR": f"127.0.0.1:{consent_app.port}",
        "CARNET_IDENTITY_ADDR": f"127.0.0.1:{identity_port}",
        "CARNET_BLOB_STORE": "fs",
        "CARNET_BLOB_DIR": str(blob_dir),
        "CARNET_MASTER_KEY_FILE": str(master_key_file),
        # Identity's lifecycle events, on a stream of this test's own.
        "CARNET_IDENTITY_EVENTS_STREAM": f"carnet:test:{uuid.uuid4().hex[:12]}:events:identity",
        "CARNET_CALL_TIMEOUT_SECONDS": "3",
    }


@pytest.fixture
def run_dossier(dossier_environ: dict[str, str], token_factory: TokenFactory) -> Iterator[AppFactory]:
    """Start dossier in-process with extra ``CARNET_*`` variables; it stops on leaving the block."""

    @contextlib.asynccontextmanager
    async def start(**variables: str) -> AsyncIterator[ServiceApp]:
        environ = {**dossier_environ, "CARNET_GRPC_LISTEN": f"127.0.0.1:{free_port()}", **variables}
        app = await build_dossier(load(DossierSettings, environ), verifier=token_factory.verifier())
        await app.start()
        try:
            yield app
        finally:
            await app.stop(0)

    yield start


@pytest.fixture
async def dossier_app(run_dossier: AppFactory) -> AsyncIterator[ServiceApp]:
    """Dossier with its default settings."""
    async with run_dossier() as app:
        yield app


@contextlib.asynccontextmanager
async def _stub(app: ServiceApp) -> AsyncIterator[pb_grpc.DossierServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield pb_grpc.DossierServiceStub(channel)


@pytest.fixture
def stub_for() -> Callable[[ServiceApp], contextlib.AbstractAsyncContextManager[pb_grpc.DossierServiceStub]]:
    """A stub on a channel to a running dossier app."""
    return _stub


@pytest.fixture
async def dossier_stub(dossier_app: ServiceApp) -> AsyncIterator[pb_grpc.DossierServiceStub]:
    async with _stub(dossier_app) as stub:
        yield stub


@pytest.fixture
async def dossier_pool(database_url: str, dossier_app: ServiceApp) -> AsyncIterator[asyncpg.Pool]:
    """A pool on dossier's schema (migrated by the app), to check what calls stored."""
    pool = await create_pool(database_url, "dossier", min_size=1, max_size=2)
    yield pool
    await pool.close()
