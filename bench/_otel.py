"""OpenTelemetry SDK providers for the benchmarks: spans exported to nowhere (counted), metrics
read in memory. A collector's cost is not AZTP's; the span's own cost is counted in full (a
synchronous processor runs it on the telemetry worker thread, whose CPU is measured)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class Dropping(SpanExporter):
    """Counts spans and keeps none."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def providers() -> tuple[TracerProvider, MeterProvider, Dropping, InMemoryMetricReader]:
    """``(tracer provider, meter provider, its exporter, its metric reader)``."""
    exporter = Dropping()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    return tracer_provider, MeterProvider(metric_readers=[reader]), exporter, reader
