"""The whole platform, started by the launcher as separate processes, for end-to-end tests.

PostgreSQL is the machine's (a fresh database), Redis is the launcher's own embedded
server, ports are free loopback ports, and every process exports its spans over OTLP
to a receiver inside the test run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from carnet_kit.testing import DEFAULT_ADMIN_URL, create_database, drop_database, free_port
from tests.otlp_sink import OtlpSink

SERVICES = ("identity", "consent", "dossier", "imaging", "notify")
START_TIMEOUT = 180


@dataclass
class Platform:
    """Addresses of a running platform."""

    base_url: str
    grpc: dict[str, str]
    dicom_port: int
    env: dict[str, str]
    data_dir: Path
    otlp: OtlpSink
    process: subprocess.Popen[bytes]


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the launcher exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200 and (log.exists() and "Carnet is running" in log.read_text()):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the platform was not ready within {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Launch the platform once for the session and stop it cleanly afterwards."""
    admin = os.environ.get("CARNET_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    database = f"carnet_e2e_{uuid.uuid4().hex[:8]}"
    database_url = asyncio.run(create_database(admin, database))
    data_dir = tmp_path_factory.mktemp("carnet-data")
    otlp = OtlpSink()
    otlp.start()
    grpc_addresses = {name: f"127.0.0.1:{free_port()}" for name in SERVICES}
    http_port, dicom_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CARNET_", "OTEL_"))
    }
    env.update({f"CARNET_{name.upper()}_ADDR": address for name, address in grpc_addresses.items()})
    env.update(
        {
            "CARNET_DATABASE_URL": database_url,
            "CARNET_HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "CARNET_DICOM_LISTEN": f"127.0.0.1:{dicom_port}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp.port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            # The test's receiver takes traces only.
            "OTEL_METRICS_EXPORTER": "none",
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = data_dir / "launcher.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "carnet_launcher", "run", "--data-dir", str(data_dir / "state")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(f"http://127.0.0.1:{http_port}/readyz", process, log)
        ports = json.loads((data_dir / "state" / "ports.json").read_text())
        yield Platform(
            base_url=f"http://127.0.0.1:{http_port}",
            grpc=grpc_addresses,
            dicom_port=dicom_port,
            env={
                **env,
                "CARNET_REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
                "CARNET_SECRETS_DIR": str(data_dir / "state" / "secrets"),
            },
            data_dir=data_dir / "state",
            otlp=otlp,
            process=process,
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        otlp.stop()
        asyncio.run(drop_database(admin, database))
