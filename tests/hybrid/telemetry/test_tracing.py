"""One trace from the client through the router to the replica, with the SDK's in-memory exporter; and how
tracing is turned on, and that off it makes no span at all."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from contextlib import asynccontextmanager

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hybrid.client import build_request
from hybrid.router.server import Router, RouterConfig
from hybrid.telemetry import tracing
from hybrid.telemetry.tracing import TracingSettings
from hybrid.v1 import inference_pb2_grpc as pb_grpc
from tests.hybrid.router import fake_replicas as scripts
from tests.hybrid.router.fake_replicas import FakeReplica, MemorySource
from tests.hybrid.telemetry.engine_replica import EngineReplica

pytestmark = pytest.mark.timeout(20)

REPLICA_SPANS = {"hybrid.stream", "hybrid.queue_wait", "hybrid.prefill", "hybrid.decode"}


@asynccontextmanager
async def routed(replica: EngineReplica, http: bool = False, also: list | None = None):
    """A real router in front of ``replica`` (and of the replicas ``also`` lists, started by the caller)."""
    await replica.start()
    config = RouterConfig(port=0, discovery="memory", poll_interval_s=60, http_port=0 if http else None)
    router = Router(config, source=MemorySource([replica.record, *(also or [])]))
    await router.start()
    channel = grpc.aio.insecure_channel(router.address)
    try:
        yield router, pb_grpc.InferenceStub(channel)
    finally:
        await channel.close()
        await router.stop()
        await replica.stop()


def by_name(spans) -> dict:
    """The finished spans by name; a name that occurs more than once maps to the last one."""
    return {span.name: span for span in spans}


def client_headers(span) -> tuple[tuple[str, str], ...]:
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return tuple(carrier.items())


async def test_one_trace_spans_the_client_the_routing_decision_and_the_replicas_stream_queue_prefill_decode(
    exported,
):
    replica = EngineReplica()
    async with routed(replica) as (_, stub):
        client_span = tracing.tracer().start_span("client")
        request = build_request("hello", priority="realtime", request_id="traced-1")
        answer = [r async for r in stub.Generate(request, timeout=5, metadata=client_headers(client_span))]
        client_span.end()
    assert "".join(r.text for r in answer) == "hi there"
    spans = exported.get_finished_spans()
    named = by_name(spans)
    assert {"client", "hybrid.route"} | REPLICA_SPANS == set(named)
    trace_id = client_span.get_span_context().trace_id
    assert {span.context.trace_id for span in spans} == {trace_id}, "every span belongs to the client's trace"

    def parent(name: str) -> int:
        return named[name].parent.span_id

    assert parent("hybrid.route") == client_span.get_span_context().span_id
    assert parent("hybrid.stream") == named["hybrid.route"].context.span_id, "router -> replica"
    for name in ("hybrid.queue_wait", "hybrid.prefill", "hybrid.decode"):
        assert parent(name) == named["hybrid.stream"].context.span_id
    route = named["hybrid.route"].attributes
    assert dict(route) == {"hybrid.tier": "edge", "hybrid.replica": "edge-1", "hybrid.reason": "REALTIME: first choice"}
    assert named["hybrid.route"].status.is_ok
    stream = named["hybrid.stream"]
    assert stream.attributes["hybrid.request_id"] == "traced-1" and stream.attributes["hybrid.outcome"] == "ok"
    assert stream.attributes["hybrid.completion_tokens"] == len("hi there")
    queue, prefill, decode = (named[n] for n in ("hybrid.queue_wait", "hybrid.prefill", "hybrid.decode"))
    assert queue.end_time <= prefill.start_time < prefill.end_time <= decode.start_time < decode.end_time
    assert named["hybrid.route"].start_time <= stream.start_time
    assert stream.end_time <= named["hybrid.route"].end_time


async def test_a_try_that_failed_before_the_answer_is_an_event_on_the_routing_span(exported):
    failing = FakeReplica("priv-1", "private", scripts.fails_at_once)
    await failing.shell.start()
    answering = EngineReplica("pub-1", "public")
    try:
        async with routed(answering, also=[failing.record]) as (_, stub):
            [r async for r in stub.Generate(build_request("hello", priority="interactive"), timeout=5)]
    finally:
        await failing.shell.stop(0)
    named = by_name(exported.get_finished_spans())
    route = named["hybrid.route"]
    assert route.attributes["hybrid.replica"] == "pub-1"
    assert route.attributes["hybrid.reason"] == "cold INTERACTIVE: spillover from private, retry 1"
    [event] = route.events
    assert (event.name, event.attributes["hybrid.replica"], event.attributes["hybrid.outcome"]) == (
        "hybrid.try_ended",
        "priv-1",
        "unavailable",
    )
    assert named["hybrid.stream"].parent.span_id == route.context.span_id


async def test_the_http_front_takes_the_traceparent_header(exported):
    replica = EngineReplica()
    async with routed(replica, http=True) as (router, _):
        client_span = tracing.tracer().start_span("client")
        body = json.dumps({"model": "fake-model", "prompt": "hello", "max_tokens": 8}).encode()
        headers = {"content-type": "application/json", **dict(client_headers(client_span))}
        post = urllib.request.Request(f"http://{router.http_address}/v1/completions", body, headers)
        status = await asyncio.to_thread(lambda: urllib.request.urlopen(post, timeout=10).status)
        assert status == 200
        client_span.end()
    named = by_name(exported.get_finished_spans())
    assert named["hybrid.route"].parent.span_id == client_span.get_span_context().span_id
    assert named["hybrid.stream"].context.trace_id == client_span.get_span_context().trace_id


async def test_a_request_without_a_traceparent_starts_its_own_trace_across_router_and_replica(exported):
    replica = EngineReplica()
    async with routed(replica) as (_, stub):
        [r async for r in stub.Generate(build_request("hello", priority="realtime"), timeout=5)]
    named = by_name(exported.get_finished_spans())
    assert named["hybrid.route"].parent is None
    assert named["hybrid.stream"].context.trace_id == named["hybrid.route"].context.trace_id


async def test_with_tracing_off_no_span_is_made(monkeypatch):
    made = []
    monkeypatch.setattr(Tracer, "start_span", lambda *args, **kwargs: made.append(args) or pytest.fail("a span"))
    assert tracing.tracer() is None
    async with routed(EngineReplica()) as (_, stub):
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        metadata = (("traceparent", parent),)
        answer = [r async for r in stub.Generate(build_request("hello", priority="realtime"), metadata=metadata)]
    assert "".join(r.text for r in answer) == "hi there"
    assert made == []
    assert tracing.carrier_of(metadata) is None


@pytest.mark.parametrize(
    ("settings", "environ", "on"),
    [
        (TracingSettings(), {}, False),
        (TracingSettings(otlp_endpoint="http://127.0.0.1:4317"), {}, True),
        (TracingSettings(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        (TracingSettings(), {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
        (TracingSettings(), {"OTEL_TRACES_EXPORTER": "otlp"}, True),
        (TracingSettings(), {"OTEL_TRACES_EXPORTER": " OTLP "}, True),
        (TracingSettings(), {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
        (TracingSettings(otlp_endpoint="http://127.0.0.1:4317"), {"OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_on_only_where_a_flag_or_the_otel_environment_asks(settings, environ, on):
    assert tracing.wanted(settings, environ) is on


def test_an_exporter_or_protocol_it_cannot_use_is_refused_with_what_to_set():
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER names console, zipkin.*'otlp'"):
        tracing.wanted(TracingSettings(), {"OTEL_TRACES_EXPORTER": "otlp,zipkin, console"})
    endpoint = TracingSettings(otlp_endpoint="http://127.0.0.1:4317")
    with pytest.raises(ValueError, match="'http/protobuf'.*'grpc'"):
        tracing.configure(endpoint, "test", {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    assert tracing.tracer() is None


def test_configure_turns_on_an_otlp_exporter_in_batches_and_names_the_service(monkeypatch):
    from opentelemetry.exporter.otlp.proto.grpc import trace_exporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoints, processors = [], []

    class RecordingExporter(trace_exporter.OTLPSpanExporter):
        def __init__(self, endpoint=None, **kwargs):
            endpoints.append(endpoint)
            super().__init__(endpoint=endpoint, **kwargs)

    monkeypatch.setattr(trace_exporter, "OTLPSpanExporter", RecordingExporter)
    add = TracerProvider.add_span_processor
    monkeypatch.setattr(TracerProvider, "add_span_processor", lambda self, p: processors.append(p) or add(self, p))
    try:
        settings = TracingSettings(otlp_endpoint="http://127.0.0.1:9", sample_ratio=0.5)
        assert tracing.configure(settings, "hybrid-x", {})
        active = tracing.tracer()
        assert active is not None
        assert active.resource.attributes["service.name"] == "hybrid-x"
        assert "TraceIdRatioBased{0.5}" in active.sampler.get_description()
        assert endpoints == ["http://127.0.0.1:9"]
        assert [type(p) for p in processors] == [BatchSpanProcessor]
        assert tracing.configure(TracingSettings(), "again", {}), "on stays on"
        assert len(endpoints) == 1
    finally:
        tracing.turn_off()
        for processor in processors:
            processor.shutdown()


def test_a_sample_ratio_outside_0_to_1_is_refused():
    with pytest.raises(ValueError, match="sample_ratio"):
        TracingSettings(sample_ratio=1.5)


async def test_the_request_log_names_the_trace_of_each_request(exported, tmp_path):
    log = tmp_path / "requests.jsonl"
    replica = EngineReplica()
    await replica.start()
    config = RouterConfig(port=0, discovery="memory", poll_interval_s=60, request_log=str(log))
    router = Router(config, source=MemorySource([replica.record]))
    await router.start()
    try:
        async with grpc.aio.insecure_channel(router.address) as channel:
            stub = pb_grpc.InferenceStub(channel)
            [r async for r in stub.Generate(build_request("hello", priority="realtime"), timeout=5)]
    finally:
        await router.stop()
        await replica.stop()
    [line] = [json.loads(text) for text in log.read_text().splitlines()]
    route = by_name(exported.get_finished_spans())["hybrid.route"]
    assert line["trace_id"] == format(route.context.trace_id, "032x")
