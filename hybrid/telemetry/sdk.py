"""The OpenTelemetry SDK pieces a tracing process is built from, imported only once tracing turns on (the SDK is
the ``tracing`` extra): the provider with its resource and sampler, and the batching span processor.

``configure`` (``hybrid.telemetry.tracing``) builds the real process's tracing from these, and
``benchmarks/observability_overhead.py`` measures the same provider with an exporter that encodes and drops.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased


class OnceHashedResource(Resource):
    """A Resource whose hash is worked out once. The OTLP encoder groups every span it exports by resource, and
    Resource's own hash writes the attributes out as JSON on every call: several microseconds a span."""

    def __init__(self, resource: Resource):
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def tracer_provider(service_name: str | None, sample_ratio: float | None) -> TracerProvider:
    """A provider whose spans name ``service_name`` (None: leave it to OTEL_SERVICE_NAME or the SDK's default),
    recording ``sample_ratio`` of the traces that start here and following a caller's sampled flag (None: the
    sampler OTEL_TRACES_SAMPLER names, every trace where it is unset)."""
    attributes = {} if service_name is None else {"service.name": service_name}
    sampler = None if sample_ratio is None else ParentBased(TraceIdRatioBased(sample_ratio))
    return TracerProvider(sampler=sampler, resource=OnceHashedResource(Resource.create(attributes)))


def batching(provider: TracerProvider, exporter: SpanExporter) -> TracerProvider:
    """``provider``, its finished spans queued and handed to ``exporter`` in batches from a thread of the SDK's
    own (sizes and delays from OTEL_BSP_*), so a request never waits on an export."""
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
