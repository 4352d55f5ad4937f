"""The whole platform, started by the launcher as separate processes, for end-to-end tests.

PostgreSQL is the machine's (a fresh database), Redis is the launcher's own embedded
server, ports are free loopback ports, and every process exports its spans over OTLP
to a receiver inside the test run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from carnet_kit.testing import DEFAULT_ADMIN_URL, create_database, drop_database
from carnet_launcher.harness import SERVICES, LaunchedPlatform, launched_platform
from tests.otlp_sink import OtlpSink

__all__ = ["SERVICES", "Platform", "fresh_database"]


@dataclass
class Platform:
    """A running platform and the OTLP receiver its processes export to."""

    launched: LaunchedPlatform
    otlp: OtlpSink

    @property
    def base_url(self) -> str:
        """The gateway."""
        return self.launched.base_url

    @property
    def grpc(self) -> dict[str, str]:
        """Each service's gRPC address."""
        return self.launched.grpc

    @property
    def dicom_port(self) -> int:
        """The DICOM SCP's port."""
        return self.launched.dicom_port

    @property
    def env(self) -> dict[str, str]:
        """The environment the services run with."""
        return self.launched.env

    @property
    def data_dir(self) -> Path:
        """The launcher's data directory."""
        return self.launched.data_dir


@pytest.fixture(scope="session")
def fresh_database() -> Iterator[str]:
    """A database of its own on the machine's PostgreSQL for one launched platform."""
    admin = os.environ.get("CARNET_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    name = f"carnet_e2e_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(create_database(admin, name))
    yield url
    asyncio.run(drop_database(admin, name))


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory, fresh_database: str) -> Iterator[Platform]:
    """Launch the platform once for the session and stop it cleanly afterwards."""
    otlp = OtlpSink()
    otlp.start()
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp.port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        # The test's receiver takes traces only.
        "OTEL_METRICS_EXPORTER": "none",
    }
    try:
        with launched_platform(
            tmp_path_factory.mktemp("carnet-data"), database_url=fresh_database, extra_env=otel
        ) as launched:
            yield Platform(launched, otlp)
    finally:
        otlp.stop()
