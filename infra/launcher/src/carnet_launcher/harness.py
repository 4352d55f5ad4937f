"""The whole platform in the background, on free loopback ports, for tests and benchmarks.

``launched_platform`` runs ``python -m carnet_launcher run`` as ``make run`` does, with
every address moved to a free port so it can run beside a developer's own platform,
waits for the banner, and stops it with SIGINT at the end (the launcher then stops
every child, Redis and PostgreSQL in order).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVICES = ("identity", "consent", "dossier", "imaging", "notify")
READY_LINE = "Carnet is running"


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LaunchedPlatform:
    """Where a launched platform answers, and the environment its services got."""

    base_url: str
    grpc: dict[str, str]
    dicom_port: int
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]


def _wait_for_banner(process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while READY_LINE not in log.read_text(errors="replace"):
        if process.poll() is not None:
            raise RuntimeError(
                f"the launcher exited with {process.returncode}:\n{log.read_text()[-4000:]}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the platform was not ready within {timeout:.0f}s:\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.3)


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def launched_platform(
    work_dir: Path,
    *,
    database_url: str,
    extra_env: Mapping[str, str] | None = None,
    seed: bool = True,
    start_timeout: float = 180.0,
    new_session: bool = False,
) -> Iterator[LaunchedPlatform]:
    """Run the platform until the block ends; the caller's CARNET_/OTEL_ variables stay out."""
    grpc_addresses = {name: f"127.0.0.1:{free_port()}" for name in SERVICES}
    http_port, dicom_port = free_port(), free_port()
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("CARNET_", "OTEL_"))
    }
    env.update({f"CARNET_{name.upper()}_ADDR": address for name, address in grpc_addresses.items()})
    env.update(
        {
            "CARNET_DATABASE_URL": database_url,
            "CARNET_HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "CARNET_DICOM_LISTEN": f"127.0.0.1:{dicom_port}",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
    )
    state = work_dir / "state"
    log = work_dir / "launcher.log"
    command = [sys.executable, "-m", "carnet_launcher", "run", "--data-dir", str(state)]
    if not seed:
        command.append("--no-seed")
    with log.open("wb") as out:
        # new_session: a Ctrl-C in the caller's terminal then reaches only the caller,
        # which sends the launcher exactly one SIGINT (a second one skips its graceful stop).
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=new_session
        )
    try:
        _wait_for_banner(process, log, start_timeout)
        ports = json.loads((state / "ports.json").read_text())
        service_env = dict(env)
        if "CARNET_REDIS_URL" not in service_env:
            service_env["CARNET_REDIS_URL"] = f"redis://127.0.0.1:{ports['redis']}/0"
        service_env["CARNET_SECRETS_DIR"] = str(state / "secrets")
        service_env["CARNET_MASTER_KEY_FILE"] = str(state / "secrets" / "master-keys")
        yield LaunchedPlatform(
            base_url=f"http://127.0.0.1:{http_port}",
            grpc=grpc_addresses,
            dicom_port=dicom_port,
            data_dir=state,
            env=service_env,
            process=process,
        )
    finally:
        _stop(process, 60)
