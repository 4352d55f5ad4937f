"""``/debug/traces`` end to end: every process's spans under ``make run``, or none with your collector.

The session ``platform`` sends its spans to the test's own OTLP receiver (as a developer's
``OTEL_EXPORTER_OTLP_ENDPOINT`` would): the gateway then says so and shows nothing. The
``make run`` case needs a platform without any ``OTEL_*`` variable, so this module starts a
second one with the launcher (fresh database, free ports, demo seed) and stops it after.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from carnet_kit.testing import DEFAULT_ADMIN_URL, create_database, drop_database, free_port
from tests.conftest import Platform

SERVICES = ("identity", "consent", "dossier", "imaging", "notify")
START_TIMEOUT = 180
TRACE_TIMEOUT = 20


def test_with_a_collector_of_your_own_the_page_says_where_spans_go(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        trace_id = client.get("/readyz").headers["traceparent"].split("-")[1]
        body = client.get("/debug/traces").json()
        page = client.get("/debug/traces", headers={"accept": "text/html"})
    assert body["exporter"] == "otlp"
    assert body["traces"] == []
    assert "OTEL_EXPORTER_OTLP" in body["detail"]
    assert page.status_code == 200
    assert "OTLP" in page.text
    deadline = time.monotonic() + TRACE_TIMEOUT
    while not any(s.trace_id == trace_id and s.service == "carnet-gateway" for s in platform.otlp.snapshot()):
        assert time.monotonic() < deadline, "the gateway's spans reach the configured collector"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m carnet_launcher run`` as ``make run`` does it, without OTEL variables."""
    admin = os.environ.get("CARNET_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    database = f"carnet_traces_{uuid.uuid4().hex[:8]}"
    database_url = asyncio.run(create_database(admin, database))
    data_dir = tmp_path_factory.mktemp("carnet-traces")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CARNET_", "OTEL_"))}
    env.update({f"CARNET_{name.upper()}_ADDR": f"127.0.0.1:{free_port()}" for name in SERVICES})
    http_port = free_port()
    env.update(
        {
            "CARNET_DATABASE_URL": database_url,
            "CARNET_HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "CARNET_DICOM_LISTEN": f"127.0.0.1:{free_port()}",
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
        _wait_for_banner(process, log)
        yield f"http://127.0.0.1:{http_port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        asyncio.run(drop_database(admin, database))


def _wait_for_banner(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while "Carnet is running" not in log.read_text(errors="replace"):
        if process.poll() is not None:
            raise RuntimeError(f"the launcher exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the platform was not ready within {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def _complete_trace(client: httpx.Client, trace_id: str, services: set[str]) -> dict[str, Any]:
    """The trace once its root and a span of each of ``services`` reached the launcher."""
    deadline = time.monotonic() + TRACE_TIMEOUT
    while True:
        body = client.get("/debug/traces", params={"trace_id": trace_id}).json()
        assert body["exporter"] == "launcher"
        found = body["traces"][0] if body["traces"] else None
        if found and services <= set(found["services"]) and not found["partial"]:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"trace {trace_id} incomplete after {TRACE_TIMEOUT}s: {found}")
        time.sleep(0.2)


def test_make_run_shows_the_spans_of_every_process_by_trace_id(launched: str) -> None:
    with httpx.Client(base_url=launched, timeout=30) as client:
        token = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_id": "lab-demo", "client_secret": "lab-demo-secret"},
        )
        assert token.status_code == 200, token.text
        trace_id = token.headers["traceparent"].split("-")[1]
        found = _complete_trace(client, trace_id, {"carnet-gateway", "carnet-identity"})
        assert found["trace_id"] == trace_id
        assert found["root"] == "POST /oauth/token"
        assert found["root_service"] == "carnet-gateway"
        identity = [s for s in found["spans"] if s["service"] == "carnet-identity"]
        assert identity and all(s["depth"] >= 1 for s in identity), "identity's spans hang under the gateway's"
        assert any(s["kind"] == "SERVER" for s in identity)

        # Readiness asks each service's health: one trace across all six processes.
        ready = client.get("/readyz")
        assert ready.status_code == 200
        readiness = _complete_trace(
            client, ready.headers["traceparent"].split("-")[1], {"carnet-gateway", *(f"carnet-{s}" for s in SERVICES)}
        )
        assert readiness["root"] == "GET /readyz"

        listed = client.get("/debug/traces").json()
        starts = [t["start_ns"] for t in listed["traces"]]
        assert starts == sorted(starts, reverse=True), "newest first"
        assert {trace_id, readiness["trace_id"]} <= {t["trace_id"] for t in listed["traces"]}
        assert listed["collector"]["capacity"] >= listed["collector"]["held"] > 0

        page = client.get("/debug/traces", params={"trace_id": trace_id}, headers={"accept": "text/html"})
        assert page.headers["content-type"].startswith("text/html")
        assert "carnet-identity" in page.text
        assert "POST /oauth/token" in page.text
