"""``/debug/traces`` end to end: every process's spans under ``make run``, or none with your collector.

The session ``platform`` sends its spans to the test's own OTLP receiver (as a developer's
``OTEL_EXPORTER_OTLP_ENDPOINT`` would): the gateway then says so and shows nothing. The
``make run`` case needs a platform without any ``OTEL_*`` variable, so this module starts a
second one with the launcher (fresh database, free ports, demo seed) and stops it after.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from carnet_kit.testing import DEFAULT_ADMIN_URL, create_database, drop_database
from carnet_launcher.harness import SERVICES, launched_platform
from tests.conftest import Platform

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
    try:
        with launched_platform(tmp_path_factory.mktemp("carnet-traces"), database_url=database_url) as platform:
            yield platform.base_url
    finally:
        asyncio.run(drop_database(admin, database))


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
