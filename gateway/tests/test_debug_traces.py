"""``/debug/traces``: never in production; the launcher's collection when it runs one, else memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from carnet_gateway.app import create_app
from carnet_gateway.devtools import group_traces
from carnet_gateway.settings import GatewaySettings
from carnet_kit.config import load
from carnet_kit.telemetry import RingSpanExporter
from carnet_kit.testing import free_port
from carnet_launcher.traces import TraceCollector


def _client(profile: str, **variables: str) -> Iterator[TestClient]:
    environ = {f"CARNET_{name.upper()}_ADDR": f"127.0.0.1:{free_port()}" for name in ("identity", "consent", "dossier", "imaging", "notify")}
    environ.update({"CARNET_PROFILE": profile, "CARNET_CALL_TIMEOUT_SECONDS": "1", **variables})
    with TestClient(create_app(load(GatewaySettings, environ))) as client:
        yield client


@pytest.fixture
def collector() -> Iterator[TraceCollector]:
    receiver = TraceCollector()
    receiver.start(0)
    try:
        yield receiver
    finally:
        receiver.stop()


class Process:
    """One platform process as the collector sees it: its own provider exporting over OTLP."""

    def __init__(self, service: str, endpoint: str) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        self.tracer = self.provider.get_tracer(service)

    def close(self) -> None:
        self.provider.shutdown()


def _trace_id(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


@pytest.fixture
def exported(collector: TraceCollector) -> Iterator[dict[str, str]]:
    """Two traces sent by two processes: a token request through identity, then a list."""
    gateway = Process("carnet-gateway", collector.endpoint)
    identity = Process("carnet-identity", collector.endpoint)
    try:
        with gateway.tracer.start_as_current_span("POST /oauth/token", kind=SpanKind.SERVER) as token:
            with gateway.tracer.start_as_current_span("carnet.identity.v1.IdentityService/IssueToken", kind=SpanKind.CLIENT) as call:
                with identity.tracer.start_as_current_span(
                    "carnet.identity.v1.IdentityService/IssueToken",
                    kind=SpanKind.SERVER,
                    context=trace.set_span_in_context(call),
                ):
                    with identity.tracer.start_as_current_span("SELECT clients"):
                        pass
        with gateway.tracer.start_as_current_span("GET /api/v1/documents", kind=SpanKind.SERVER) as listing:
            pass
        yield {"token": _trace_id(token), "listing": _trace_id(listing)}
    finally:
        gateway.close()
        identity.close()


def test_not_served_in_production_even_with_a_collector(collector: TraceCollector) -> None:
    for client in _client("production", CARNET_DEV_TRACES_URL=collector.endpoint):
        response = client.get("/debug/traces")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
        assert client.get("/debug/traces", headers={"accept": "text/html"}).status_code == 404


def test_with_the_launchers_collector_every_process_is_shown_grouped_by_trace(
    collector: TraceCollector, exported: dict[str, str]
) -> None:
    for client in _client("embedded", CARNET_DEV_TRACES_URL=collector.endpoint):
        for _ in range(2):  # this page's own requests are traced too, but never listed
            body = client.get("/debug/traces").json()
        assert body["exporter"] == "launcher"
        assert body["collector"]["capacity"] == 5000
        assert [t["trace_id"] for t in body["traces"]] == [exported["listing"], exported["token"]], "newest first"
        token = body["traces"][1]
        assert token["root"] == "POST /oauth/token"
        assert token["root_service"] == "carnet-gateway"
        assert token["services"] == ["carnet-gateway", "carnet-identity"]
        assert token["span_count"] == 4
        assert not token["partial"]
        assert token["duration_ms"] >= 0
        assert token["start"].endswith("Z")
        assert [(s["depth"], s["service"], s["kind"]) for s in token["spans"]] == [
            (0, "carnet-gateway", "SERVER"),
            (1, "carnet-gateway", "CLIENT"),
            (2, "carnet-identity", "SERVER"),
            (3, "carnet-identity", "INTERNAL"),
        ]

        one = client.get("/debug/traces", params={"trace_id": exported["token"].upper()}).json()
        assert [t["trace_id"] for t in one["traces"]] == [exported["token"]]
        assert one["trace_id"] == exported["token"]
        assert [t["trace_id"] for t in client.get("/debug/traces?limit=1").json()["traces"]] == [exported["listing"]]

        page = client.get("/debug/traces", headers={"accept": "text/html,application/xhtml+xml"})
        assert page.headers["content-type"].startswith("text/html")
        assert f"?trace_id={exported['token']}" in page.text
        assert "carnet-identity" in page.text
        assert "padding-left:4.15em" in page.text, "the depth-3 span is indented"
        assert client.get("/debug/traces?format=json", headers={"accept": "text/html"}).json()["exporter"] == "launcher"


def test_a_malformed_trace_id_is_a_400_problem(collector: TraceCollector) -> None:
    for client in _client("embedded", CARNET_DEV_TRACES_URL=collector.endpoint):
        response = client.get("/debug/traces", params={"trace_id": "not-a-trace"})
        assert response.status_code == 400
        assert response.json()["reason"] == "INVALID_TRACE_ID"
        assert client.get("/debug/traces", params={"limit": 0}).status_code == 400


def test_an_unreachable_collector_is_a_503_problem() -> None:
    for client in _client("embedded", CARNET_DEV_TRACES_URL=f"http://127.0.0.1:{free_port()}"):
        response = client.get("/debug/traces")
        assert response.status_code == 503
        assert response.json()["reason"] == "TRACES_UNAVAILABLE"


def test_without_a_collector_the_gateways_own_spans_are_shown(spans: RingSpanExporter) -> None:
    for client in _client("embedded"):
        trace_id = client.get("/healthz").headers["traceparent"].split("-")[1]
        body = client.get("/debug/traces", params={"trace_id": trace_id}).json()
        assert body["exporter"] == "memory"
        [health] = body["traces"]
        assert health["root"] == "GET /healthz"
        assert health["services"] == ["carnet-tests"]
        listed = client.get("/debug/traces").json()["traces"]
        assert trace_id in [t["trace_id"] for t in listed]
        assert all(t["root"] != "GET /debug/traces" for t in listed)


def _span(span_id: str, parent: str, start: int, name: str, trace_id: str = "a" * 32) -> dict[str, Any]:
    return {"trace_id": trace_id, "span_id": span_id * 16, "parent_span_id": parent * 16 if parent else "", "name": name, "service": "s", "start_ns": start, "end_ns": start + 1_000_000, "status": "UNSET"}


def test_a_trace_whose_root_has_not_arrived_is_marked_partial() -> None:
    # The gateway's server span ends (and is exported) last: its children can come first.
    [partial] = group_traces([_span("2", "1", 20_000_000, "call b"), _span("3", "1", 10_000_000, "call a"), _span("4", "3", 15_000_000, "query")])
    assert partial["partial"]
    assert partial["root"] == "call a"
    assert [(s["name"], s["depth"]) for s in partial["spans"]] == [("call a", 0), ("query", 1), ("call b", 0)]
    assert partial["duration_ms"] == 11.0, "from the first start to the last end"
    assert [s["offset_ms"] for s in partial["spans"]] == [0.0, 5.0, 10.0]
