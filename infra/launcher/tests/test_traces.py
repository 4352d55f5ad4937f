"""The trace collector: real OTLP exports from an SDK in another process, kept and served back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from carnet_launcher.errors import InfraError
from carnet_launcher.traces import QUERY_METHOD, SpanStore, TraceCollector

CHILD = textwrap.dedent("""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "carnet-child"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # OTEL_* from the env
    tracer = provider.get_tracer("child")
    with tracer.start_as_current_span("earlier") as earlier:
        pass
    with tracer.start_as_current_span(
        "POST /things",
        kind=SpanKind.SERVER,
        attributes={"http.response.status_code": 201, "tags": ["a", "b"], "ok": True},
        links=[trace.Link(earlier.get_span_context())],
    ) as root:
        create = "carnet.things.v1.Things/Create"
        with tracer.start_as_current_span(create, kind=SpanKind.CLIENT) as call:
            call.add_event("retry", {"attempt": 2})
            call.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()  # flushes the batch
    for span in (root, earlier):
        print(format(span.get_span_context().trace_id, "032x"))
""")


def query(collector: TraceCollector, **request: Any) -> dict[str, Any]:
    target = f"127.0.0.1:{collector.port}"
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        call = channel.unary_unary(QUERY_METHOD)
        reply: dict[str, Any] = json.loads(call(json.dumps(request).encode(), timeout=5))
    return reply


@pytest.fixture
def collector() -> Iterator[TraceCollector]:
    receiver = TraceCollector(capacity=100)
    receiver.start(0)
    try:
        yield receiver
    finally:
        receiver.stop()


def test_spans_exported_by_an_sdk_in_another_process_are_kept_and_served(
    collector: TraceCollector,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = collector.endpoint
    env["OTEL_EXPORTER_OTLP_TRACES_INSECURE"] = "true"
    env["OTEL_BSP_SCHEDULE_DELAY"] = "200"
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    trace_id, earlier_trace_id = child.stdout.split()

    reply = query(collector, trace_id=trace_id)
    assert reply["capacity"] == 100
    assert reply["held"] == reply["received"] == 3
    spans = {span["name"]: span for span in reply["spans"]}
    assert set(spans) == {"POST /things", "carnet.things.v1.Things/Create"}
    root, call = spans["POST /things"], spans["carnet.things.v1.Things/Create"]
    assert root["service"] == call["service"] == "carnet-child"
    assert root["scope"] == "child"
    assert root["parent_span_id"] == ""
    assert call["parent_span_id"] == root["span_id"]
    assert root["kind"] == "SERVER"
    assert call["kind"] == "CLIENT"
    assert root["attributes"] == {"http.response.status_code": 201, "tags": ["a", "b"], "ok": True}
    assert root["links"][0]["trace_id"] == earlier_trace_id
    assert call["status"] == "ERROR"
    assert call["status_message"] == "boom"
    assert call["events"][0]["name"] == "retry"
    assert call["events"][0]["attributes"] == {"attempt": 2}
    assert root["start_ns"] <= call["start_ns"] <= call["end_ns"] <= root["end_ns"]

    # Without a trace id: the newest traces first, a root span name can be left out.
    everything = query(collector, limit=10)
    assert {span["trace_id"] for span in everything["spans"]} == {trace_id, earlier_trace_id}
    newest = query(collector, limit=1)
    assert {span["trace_id"] for span in newest["spans"]} == {trace_id}
    without = query(collector, limit=10, exclude_roots=["POST /things"])
    assert {span["trace_id"] for span in without["spans"]} == {earlier_trace_id}


def test_a_malformed_query_is_an_invalid_argument(collector: TraceCollector) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{collector.port}") as channel:
        call = channel.unary_unary(QUERY_METHOD)
        with pytest.raises(grpc.RpcError) as caught:
            call(b"[1, 2]", timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _span(trace: str, span: str, start: int, parent: str = "", name: str = "op") -> dict[str, Any]:
    return {
        "trace_id": trace * 32,
        "span_id": span * 16,
        "parent_span_id": parent * 16 if parent else "",
        "name": name,
        "start_ns": start,
        "end_ns": start + 10,
    }


def test_the_store_keeps_only_the_most_recent_spans() -> None:
    store = SpanStore(capacity=3)
    store.add([_span("a", "1", 100), _span("a", "2", 110, parent="1")])
    store.add([_span("b", "3", 50), _span("c", "4", 200)])
    held = store.spans()
    assert [span["span_id"][0] for span in held] == ["2", "3", "4"], "the oldest went first"
    result = store.query(limit=2)
    assert (result["held"], result["received"], result["capacity"]) == (3, 4, 3)
    # Traces ordered by their start: c (200), a (110, its root is gone), then b (50).
    assert [span["trace_id"][0] for span in result["spans"]] == ["c", "a"]
    assert store.query(trace_id="B" * 32)["spans"] == [held[1]], "trace ids in any case"
    unwanted = store.query(limit=5, exclude_traces=["C" * 32])
    assert [span["trace_id"][0] for span in unwanted["spans"]] == ["a", "b"]
    with pytest.raises(ValueError, match="capacity"):
        SpanStore(capacity=0)


def test_a_port_already_taken_is_reported() -> None:
    first = TraceCollector()
    port = first.start(0)
    try:
        second = TraceCollector()
        with pytest.raises(InfraError, match=f"cannot listen on 127.0.0.1:{port}"):
            second.start(port)
    finally:
        first.stop()
