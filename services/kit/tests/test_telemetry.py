"""Without a collector, spans and metrics are kept in memory for the process to show."""

from __future__ import annotations

from opentelemetry import metrics, trace

from carnet_kit.telemetry import RingSpanExporter, inject_traceparent, metric_reader, span_to_dict


def test_spans_are_kept_in_the_ring_with_their_trace(spans: RingSpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer, tracer.start_as_current_span("inner"):
        traceparent = inject_traceparent()
    trace_id = format(outer.get_span_context().trace_id, "032x")
    assert traceparent.split("-")[1] == trace_id
    mine = [span_to_dict(s) for s in spans.spans() if format(s.get_span_context().trace_id, "032x") == trace_id]
    assert {s["name"] for s in mine} == {"outer", "inner"}
    inner = next(s for s in mine if s["name"] == "inner")
    assert inner["parent_span_id"] == format(outer.get_span_context().span_id, "016x")
    assert inner["service"] == "carnet-tests"


def test_metrics_are_readable_in_memory(spans: RingSpanExporter) -> None:
    reader = metric_reader()
    assert reader is not None
    counter = metrics.get_meter("test").create_counter("carnet.test.things")
    counter.add(3, {"kind": "a"})
    data = reader.get_metrics_data()  # type: ignore[attr-defined]
    points = [
        point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "carnet.test.things"
        for point in metric.data.data_points
    ]
    assert points == [3]
