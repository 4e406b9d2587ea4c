"""Tracing into memory for the tests: the SDK's InMemorySpanExporter behind a synchronous processor."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hybrid.telemetry import tracing


@pytest.fixture
def exported():
    """Turns tracing on for the test, every finished span kept in the exporter it yields; off afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.turn_off()
        provider.shutdown()

