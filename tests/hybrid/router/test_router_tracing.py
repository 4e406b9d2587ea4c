"""One trace from a client through the router to the session's real edge agent (ONNX Runtime, in process)."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hybrid.client import build_request
from hybrid.telemetry import tracing
from hybrid.v1 import inference_pb2_grpc as pb_grpc


@pytest.fixture
def exported():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.turn_off()
        provider.shutdown()


def test_one_trace_spans_the_client_the_router_and_the_edge_agents_queue_prefill_and_decode(exported, edge_router):
    client_span = tracing.tracer().start_span("client")
    headers: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(headers, context=trace.set_span_in_context(client_span))
    with grpc.insecure_channel(edge_router.address) as channel:
        request = build_request("Name a colour.", max_new_tokens=6, priority="realtime", request_id="edge-traced")
        answer = list(pb_grpc.InferenceStub(channel).Generate(request, timeout=120, metadata=tuple(headers.items())))
    client_span.end()
    assert answer[-1].finish_reason
    spans = [s for s in exported.get_finished_spans() if s.context.trace_id == client_span.get_span_context().trace_id]
    named = {span.name: span for span in spans}
    assert {"client", "hybrid.route", "hybrid.stream", "hybrid.queue_wait", "hybrid.prefill", "hybrid.decode"} == set(
        named
    )
    assert named["hybrid.route"].attributes["hybrid.tier"] == "edge"
    assert named["hybrid.stream"].parent.span_id == named["hybrid.route"].context.span_id
    stream = named["hybrid.stream"].attributes
    assert stream["hybrid.request_id"] == "edge-traced" and stream["hybrid.replica"] == answer[-1].served_by.replica_id
    assert stream["hybrid.completion_tokens"] == answer[-1].usage.completion_tokens
