"""OpenTelemetry set-up: OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, in memory otherwise.

Traces go to a ring of recent spans and metrics to an in-memory reader when no
collector is configured.

Configuration follows the standard ``OTEL_*`` variables; the service name comes from
``OTEL_SERVICE_NAME`` when set, else from the caller.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Sequence

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

# Custom span attributes, declared once.
ATTR_HOLDER_ID = "carnet.holder_id"
ATTR_DOCUMENT_ID = "carnet.document_id"
ATTR_EVENT_ID = "carnet.event_id"
ATTR_EVENT_TYPE = "carnet.event_type"
ATTR_ACTOR_ROLE = "carnet.actor.role"
ATTR_DECISION = "carnet.decision"

RING_CAPACITY = 2048


class RingSpanExporter(SpanExporter):
    """Keeps the most recent finished spans in memory (the embedded and test default)."""

    def __init__(self, capacity: int = RING_CAPACITY) -> None:
        self._spans: collections.deque[ReadableSpan] = collections.deque(maxlen=capacity)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self._spans.extend(spans)
        return SpanExportResult.SUCCESS

    def spans(self) -> list[ReadableSpan]:
        """A copy of the spans held, oldest first."""
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        """Forget every span held."""
        with self._lock:
            self._spans.clear()

    def shutdown(self) -> None:
        return None


_ring: RingSpanExporter | None = None
_provider: TracerProvider | None = None
_metric_reader: MetricReader | None = None


def setup_telemetry(service_name: str) -> TracerProvider:
    """Install the process-wide tracer provider once and return it."""
    global _provider, _ring
    if _provider is not None:
        return _provider
    global _metric_reader
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    resource = Resource.create({SERVICE_NAME: name})
    provider = TracerProvider(resource=resource)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        _ring = RingSpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(_ring))
    trace.set_tracer_provider(provider)
    if os.environ.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "none":
        _metric_reader = None
    elif os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        _metric_reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    else:
        _metric_reader = InMemoryMetricReader()
    readers = [_metric_reader] if _metric_reader is not None else []
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    _provider = provider
    return provider


def metric_reader() -> MetricReader | None:
    """The process's metric reader: OTLP export, or in memory (collect() to read)."""
    return _metric_reader


def span_ring() -> RingSpanExporter | None:
    """The in-memory exporter, when telemetry runs without OTLP."""
    return _ring


def inject_traceparent() -> str:
    """The W3C ``traceparent`` of the current span, or '' outside any span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def extract_context(traceparent: str) -> Context:
    """A context carrying the remote span described by a ``traceparent``."""
    return propagate.extract({"traceparent": traceparent} if traceparent else {})


def span_to_dict(span: ReadableSpan) -> dict[str, object]:
    """A JSON-friendly view of a finished span (for /debug/traces and tests)."""
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "service": span.resource.attributes.get(SERVICE_NAME, ""),
        "trace_id": format(ctx.trace_id, "032x") if ctx else "",
        "span_id": format(ctx.span_id, "016x") if ctx else "",
        "parent_span_id": format(parent.span_id, "016x") if parent else "",
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": {k: v for k, v in (span.attributes or {}).items()},
        "links": [
            {"trace_id": format(link.context.trace_id, "032x"), "span_id": format(link.context.span_id, "016x")}
            for link in span.links
        ],
    }
