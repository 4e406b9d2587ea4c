"""The trace headers the router reads and writes without OpenTelemetry's propagator, against what the
propagator makes of the same headers; the provider's resource; and the router's span when no decision came."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hybrid.protocol import GenerationRequest, Priority
from hybrid.router.tracing import RequestTrace
from hybrid.telemetry import tracing
from hybrid.telemetry.sdk import OnceHashedResource, tracer_provider

PROPAGATOR = TraceContextTextMapPropagator()
TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def the_propagators(carrier: dict[str, str]) -> trace.SpanContext:
    return trace.get_current_span(PROPAGATOR.extract(carrier)).get_span_context()


def ours(carrier: dict[str, str]) -> trace.SpanContext:
    return trace.get_current_span(tracing.parent_of(carrier)).get_span_context()


@pytest.mark.parametrize(
    "carrier",
    [
        {"traceparent": f"00-{TRACE}-{SPAN}-01"},
        {"traceparent": f"00-{TRACE}-{SPAN}-00"},
        {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "vendor=a,other=b"},
        {"traceparent": f"01-{TRACE}-{SPAN}-01-later-fields"},
        {"traceparent": f"00-{'0' * 32}-{SPAN}-01"},
        {"traceparent": f"00-{TRACE}-{'0' * 16}-01"},
        {"traceparent": f"ff-{TRACE}-{SPAN}-01"},
        {"traceparent": f"00-{TRACE.upper()}-{SPAN}-01"},
        {"traceparent": f"00-{TRACE}-{SPAN}-01-extra"},
        {"traceparent": "garbage"},
        {"tracestate": "vendor=a"},
    ],
)
def test_a_traceparent_is_read_as_the_propagator_reads_it(exported, carrier):
    assert ours(carrier) == the_propagators(carrier)


def test_the_headers_for_the_next_hop_are_what_the_propagator_writes(exported):
    for carrier in (
        {"traceparent": f"00-{TRACE}-{SPAN}-01"},
        {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "v=1"},
    ):
        span = tracing.tracer().start_span("hop", context=tracing.parent_of(carrier))
        written: dict[str, str] = {}
        PROPAGATOR.inject(written, context=trace.set_span_in_context(span))
        assert dict(tracing.metadata_of(span)) == written
        assert written["traceparent"].startswith(f"00-{TRACE}-")
    assert tracing.metadata_of(trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)) == ()


def test_the_resource_hashes_once_and_equals_the_sdks(monkeypatch):
    resource = Resource.create({"service.name": "hybrid-router"})
    once = OnceHashedResource(resource)
    assert hash(once) == hash(resource) and once == resource and resource == once
    assert {resource: 1}[once] == 1, "the encoder groups spans by resource: both are the same key"
    provider = tracer_provider("hybrid-router", None)
    assert isinstance(provider.resource, OnceHashedResource)
    assert provider.resource.attributes["service.name"] == "hybrid-router"
    monkeypatch.setattr(Resource, "__hash__", lambda self: pytest.fail("hashed again"))
    hash(once)


def test_a_request_that_ends_before_any_decision_still_has_its_span(exported):
    request = GenerationRequest("r", "", "hi", None, 8, 0.0, 1.0, None, [], Priority.INTERACTIVE)
    request.trace_carrier = {"traceparent": f"00-{TRACE}-{SPAN}-01"}
    routed = RequestTrace(tracing.tracer(), request)
    assert routed.trace_id() == TRACE
    routed.end(ValueError("before the policy"))
    [span] = exported.get_finished_spans()
    assert span.name == "hybrid.route" and span.parent.span_id == int(SPAN, 16)
    assert not span.status.is_ok and dict(span.attributes) == {}
