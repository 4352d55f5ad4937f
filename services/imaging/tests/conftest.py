"""Fixtures of imaging's tests: the real identity (AE owners, patients), imaging in-process with its DICOM
SCP on a free port, operators' and PACS' registrations, dcmtk's command-line tools."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from carnet.identity.v1 import identity_service_pb2 as identity_pb
from carnet.identity.v1 import identity_service_pb2_grpc as identity_grpc
from carnet.identity.v1 import resources_pb2 as identity_res
from carnet.imaging.v1 import imaging_service_pb2 as pb
from carnet.imaging.v1 import imaging_service_pb2_grpc as pb_grpc
from carnet.imaging.v1 import resources_pb2 as res
from carnet_identity.testing import running_identity
from carnet_imaging.app import build
from carnet_imaging.settings import ImagingSettings
from carnet_kit.auth import Principal
from carnet_kit.config import load
from carnet_kit.crypto import new_master_key_line
from carnet_kit.server import ServiceApp
from carnet_kit.testing import TokenFactory, free_port, write_service_secrets

OPERATOR = Principal(subject="op-imaging", role="operator")
Metadata = Callable[[Principal], tuple[tuple[str, str], ...]]


def luhn_digit(stem: str) -> str:
    """The Luhn check digit of ``stem`` (FINESS and RPPS numbers end with one)."""
    total = 0
    for index, char in enumerate(reversed(stem)):
        digit = int(char) * (2 if index % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return str((10 - total % 10) % 10)


@pytest.fixture
def as_caller(token_factory: TokenFactory) -> Metadata:
    def metadata(principal: Principal) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token_factory.mint(principal)}"),)

    return metadata


@pytest.fixture
def service_secrets_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "service-secrets"
    write_service_secrets(directory, "imaging")
    return directory


@pytest.fixture
async def identity_app(
    database_url: str, redis_url: str, token_factory: TokenFactory, service_secrets_dir: Path
) -> AsyncIterator[ServiceApp]:
    async with running_identity(database_url, redis_url, token_factory, service_secrets_dir) as app:
        yield app


@pytest.fixture
async def identity(identity_app: ServiceApp) -> AsyncIterator[identity_grpc.IdentityServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{identity_app.port}") as channel:
        yield identity_grpc.IdentityServiceStub(channel)


@dataclass
class Imaging:
    """A running imaging service."""

    app: ServiceApp
    stub: pb_grpc.ImagingServiceStub
    dicom_port: int
    settings: ImagingSettings


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


@pytest.fixture(scope="session")
def master_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One master key ring for the session: the test database keeps the keys it wrapped (the quarantine's)."""
    key_file = tmp_path_factory.mktemp("imaging-keys") / "master-keys"
    key_file.write_text(new_master_key_line("k1") + "\n")
    return key_file


@pytest.fixture
def imaging_settings(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    identity_app: ServiceApp,
    service_secrets_dir: Path,
    master_key_file: Path,
) -> Callable[..., ImagingSettings]:
    key_file = master_key_file

    def make(**extra: str) -> ImagingSettings:
        return load(
            ImagingSettings,
            {
                "CARNET_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
                "CARNET_DATABASE_URL": database_url,
                "CARNET_REDIS_URL": redis_url,
                "CARNET_PROFILE": "test",
                "CARNET_IDENTITY_ADDR": f"127.0.0.1:{identity_app.port}",
                "CARNET_MASTER_KEY_FILE": str(key_file),
                "CARNET_SERVICE_SECRET_FILE": str(service_secrets_dir / "imaging"),
                "CARNET_BLOB_DIR": str(tmp_path / "imaging-objects"),
                "CARNET_DICOM_LISTEN": f"127.0.0.1:{free_port()}",
                "CARNET_CALL_TIMEOUT_SECONDS": "5",
                "CARNET_GRACE_SECONDS": "0",
                **extra,
            },
        )

    return make


@pytest.fixture
def run_imaging(
    imaging_settings: Callable[..., ImagingSettings], token_factory: TokenFactory
) -> Callable[..., contextlib.AbstractAsyncContextManager[Imaging]]:
    @contextlib.asynccontextmanager
    async def start(**extra: str) -> AsyncIterator[Imaging]:
        settings = imaging_settings(**extra)
        app = await build(settings, verifier=token_factory.verifier())
        await app.start()
        try:
            for _ in range(200):
                if _listening(settings.dicom_listen.port):
                    break
                await asyncio.sleep(0.05)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
                yield Imaging(app, pb_grpc.ImagingServiceStub(channel), settings.dicom_listen.port, settings)
        finally:
            await app.stop(0)

    return start


@pytest.fixture
async def imaging(run_imaging: Any) -> AsyncIterator[Imaging]:
    async with run_imaging() as running:
        yield running


@dataclass
class Pacs:
    """A PACS registered at identity (software client owning an AE title) and in imaging's AE registry."""

    client_id: str
    ae_title: str
    organisation_id: str
    application_entity: res.ApplicationEntity


@pytest.fixture
def register_pacs(
    identity: identity_grpc.IdentityServiceStub, imaging: Imaging, as_caller: Metadata
) -> Callable[..., Any]:
    async def register(*, in_imaging: bool = True, **ae_fields: Any) -> Pacs:
        stem = f"75{random.randint(0, 10**6 - 1):06d}"
        organisation = await identity.CreateOrganisation(
            identity_pb.CreateOrganisationRequest(
                organisation=identity_res.Organisation(
                    finess=stem + luhn_digit(stem),
                    name="Centre d'imagerie Essai",
                    kind=identity_res.ORGANISATION_KIND_IMAGING_CENTRE,
                    department_code="75",
                )
            ),
            metadata=as_caller(OPERATOR),
        )
        title = f"PACS{uuid.uuid4().hex[:8].upper()}"
        client = await identity.CreateSoftwareClient(
            identity_pb.CreateSoftwareClientRequest(
                client=identity_res.SoftwareClient(
                    display_name="PACS d'essai",
                    kind=identity_res.CLIENT_KIND_PACS,
                    organisation_id=organisation.organisation_id,
                    scopes=["imaging.push"],
                    ae_titles=[title],
                )
            ),
            metadata=as_caller(OPERATOR),
        )
        entity = res.ApplicationEntity()
        if in_imaging:
            entity = await imaging.stub.CreateApplicationEntity(
                pb.CreateApplicationEntityRequest(
                    application_entity=res.ApplicationEntity(ae_title=title, client_id=client.client_id, **ae_fields)
                ),
                metadata=as_caller(OPERATOR),
            )
        return Pacs(client.client_id, title, organisation.organisation_id, entity)

    return register


@pytest.fixture(scope="session")
def dcmtk() -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """Runs a dcmtk tool (echoscu, storescu, …) with TCP_NODELAY=1; skips nothing: dcmtk is required."""
    assert shutil.which("storescu"), "dcmtk is required (apt-get install dcmtk); .ci/run installs it"

    def run(tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, "TCP_NODELAY": "1"}
        return subprocess.run(
            [tool, *args], env=environ, capture_output=True, text=True, timeout=timeout, check=False
        )

    yield run
