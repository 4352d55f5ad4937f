"""A minimal OTLP/gRPC trace receiver for tests: the platform's processes export to it.

It is the launcher's own trace collector (``carnet_launcher.traces``), sized to keep every
span of a test session, with the received spans offered as small objects.
"""

from __future__ import annotations

from typing import Any

from carnet_launcher.traces import TraceCollector

CAPACITY = 1_000_000


class CollectedSpan:
    """A span as received over OTLP."""

    def __init__(self, span: dict[str, Any]) -> None:
        self.service: str = span["service"]
        self.name: str = span["name"]
        self.trace_id: str = span["trace_id"]
        self.span_id: str = span["span_id"]
        self.parent_span_id: str = span["parent_span_id"]
        self.links = [(link["trace_id"], link["span_id"]) for link in span["links"]]
        self.attributes: dict[str, Any] = span["attributes"]

    def __repr__(self) -> str:
        return f"<{self.service}:{self.name} trace={self.trace_id[:8]}>"


class OtlpSink:
    """Keeps every span exported to it (up to a million)."""

    def __init__(self) -> None:
        self._collector = TraceCollector(capacity=CAPACITY)
        self.port = 0

    @property
    def endpoint(self) -> str:
        """The value for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        return self._collector.endpoint

    def snapshot(self) -> list[CollectedSpan]:
        """The spans received so far."""
        return [CollectedSpan(span) for span in self._collector.store.spans()]

    def start(self) -> None:
        """Start serving on a free loopback port (then in ``port``)."""
        self.port = self._collector.start(0)

    def stop(self) -> None:
        """Stop serving."""
        self._collector.stop(0)
