"""The launcher's trace collector: an OTLP/gRPC receiver keeping the platform's recent spans.

Every process of the embedded platform exports its spans here (standard OTLP/gRPC,
``opentelemetry.proto.collector.trace.v1.TraceService/Export``); the collector keeps the
last ``capacity`` spans in a ring, as JSON-friendly dicts. The gateway's ``/debug/traces``
reads them back over the same loopback port with one development-only method,
:data:`QUERY_METHOD`, whose request and response are JSON documents (UTF-8 bytes):

request
    ``{"trace_id": "<32 hex>" | "", "limit": <traces>, "exclude_roots": ["<span name>", …],
    "exclude_traces": ["<32 hex>", …]}`` (every key optional)
response
    ``{"capacity": N, "held": n, "received": total, "spans": [<span>, …]}`` — every span held
    of the ``limit`` traces that started last (or of ``trace_id`` alone), skipping the traces
    listed in ``exclude_traces`` and those whose root span's name is in ``exclude_roots``.

A span is ``{"name", "service", "scope", "trace_id", "span_id", "parent_span_id", "kind",
"start_ns", "end_ns", "status", "status_message", "attributes", "events", "links"}``: the
keys of ``carnet_kit.telemetry.span_to_dict``, plus a few.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Collection, Sequence
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from .errors import InfraError
from .ports import LOOPBACK

CAPACITY = 5000
"""Spans kept by the launcher's collector (the oldest go first)."""
DEFAULT_TRACES = 50
QUERY_SERVICE = "carnet_launcher.DevTraces"
QUERY_METHOD = f"/{QUERY_SERVICE}/Query"
OTLP_TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
UNKNOWN_SERVICE = "unknown_service"

JsonSpan = dict[str, Any]


def any_value(value: AnyValue) -> object:
    """The Python value of an OTLP ``AnyValue`` (bytes as hex, so it stays JSON)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    result: object = getattr(value, kind)
    return result


def attributes(pairs: Sequence[KeyValue]) -> dict[str, object]:
    """OTLP key-value pairs as a dict."""
    return {pair.key: any_value(pair.value) for pair in pairs}


def span_to_json(span: Span, service: str, scope: str = "") -> JsonSpan:
    """One OTLP span as a JSON-friendly dict (ids in lowercase hex, times in ns)."""
    return {
        "name": span.name,
        "service": service,
        "scope": scope,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "kind": Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "status": Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
        "status_message": span.status.message,
        "attributes": attributes(span.attributes),
        "events": [
            {
                "name": event.name,
                "time_ns": event.time_unix_nano,
                "attributes": attributes(event.attributes),
            }
            for event in span.events
        ],
        "links": [
            {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()} for link in span.links
        ],
    }


def spans_from_request(request: ExportTraceServiceRequest) -> list[JsonSpan]:
    """Every span of an OTLP export request, with its resource's ``service.name``."""
    spans: list[JsonSpan] = []
    for resource_spans in request.resource_spans:
        service = attributes(resource_spans.resource.attributes).get("service.name")
        name = service if isinstance(service, str) and service else UNKNOWN_SERVICE
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            spans.extend(span_to_json(span, name, scope) for span in scope_spans.spans)
    return spans


class SpanStore:
    """The most recent spans, at most ``capacity`` of them, safe to share between threads."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._spans: collections.deque[JsonSpan] = collections.deque(maxlen=capacity)
        self._received = 0
        self._lock = threading.Lock()

    def add(self, spans: Sequence[JsonSpan]) -> None:
        """Keep ``spans``, dropping the oldest ones beyond the capacity."""
        with self._lock:
            self._spans.extend(spans)
            self._received += len(spans)

    def spans(self) -> list[JsonSpan]:
        """A copy of the spans held, in order of arrival."""
        with self._lock:
            return list(self._spans)

    def query(
        self,
        trace_id: str = "",
        limit: int = DEFAULT_TRACES,
        exclude_roots: Collection[str] = (),
        exclude_traces: Collection[str] = (),
    ) -> dict[str, Any]:
        """The spans of trace ``trace_id``, or of the ``limit`` traces that started last."""
        with self._lock:
            held = list(self._spans)
            received = self._received
        if trace_id:
            chosen = [span for span in held if span["trace_id"] == trace_id.lower()]
        else:
            by_trace: dict[str, list[JsonSpan]] = {}
            for span in held:
                by_trace.setdefault(span["trace_id"], []).append(span)
            roots = set(exclude_roots)
            traces = {trace.lower() for trace in exclude_traces}
            started = sorted(
                (
                    (min(span["start_ns"] for span in group), trace)
                    for trace, group in by_trace.items()
                    if trace not in traces
                    and not any(s["name"] in roots and not s["parent_span_id"] for s in group)
                ),
                reverse=True,
            )
            chosen = [span for _, trace in started[: max(limit, 0)] for span in by_trace[trace]]
        return {
            "capacity": self.capacity,
            "held": len(held),
            "received": received,
            "spans": chosen,
        }


class TraceCollector:
    """The OTLP/gRPC receiver and its query method, on a loopback port, in its own threads."""

    def __init__(self, capacity: int = CAPACITY, host: str = LOOPBACK) -> None:
        self.store = SpanStore(capacity)
        self.host = host
        self.port: int | None = None
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        """The OTLP endpoint to give exporters (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)."""
        if self.port is None:
            raise RuntimeError("the trace collector is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, port: int = 0) -> int:
        """Listen on ``host:port`` (0: a port the kernel picks) and return the port."""
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="carnet-traces"),
            handlers=[self._otlp_handler(), self._query_handler()],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # Without this a second server could silently share the port.
                ("grpc.so_reuseport", 0),
            ],
        )
        address = f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            server.stop(None)
            raise InfraError(f"trace collector cannot listen on {address}: {exc}") from None
        server.start()
        self._server, self.port = server, bound
        return bound

    def stop(self, grace: float = 1.0) -> None:
        """Stop listening (the spans held are forgotten with the collector)."""
        if self._server is not None:
            self._server.stop(grace).wait(grace + 5)
        self._server = None

    def _export(self, request: ExportTraceServiceRequest, _context: grpc.ServicerContext) -> Any:
        self.store.add(spans_from_request(request))
        return ExportTraceServiceResponse()

    def _query(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            body = json.loads(request or b"{}")
            if not isinstance(body, dict):
                raise TypeError("the query is not a JSON object")
            trace_id = str(body.get("trace_id") or "")
            limit = int(body.get("limit") or DEFAULT_TRACES)
            roots = [str(name) for name in body.get("exclude_roots") or ()]
            traces = [str(trace) for trace in body.get("exclude_traces") or ()]
        except (TypeError, ValueError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad trace query: {exc}")
        result = self.store.query(trace_id, limit, roots, traces)
        return json.dumps(result, separators=(",", ":")).encode()

    def _otlp_handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            OTLP_TRACE_SERVICE,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self._export,
                    request_deserializer=ExportTraceServiceRequest.FromString,
                    response_serializer=ExportTraceServiceResponse.SerializeToString,
                )
            },
        )

    def _query_handler(self) -> grpc.GenericRpcHandler:
        # No (de)serializers: the method carries JSON bytes as they are.
        return grpc.method_handlers_generic_handler(
            QUERY_SERVICE, {"Query": grpc.unary_unary_rpc_method_handler(self._query)}
        )
