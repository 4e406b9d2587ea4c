"""``request_of``: the request a gRPC call carries, with its deadline and, while tracing, the caller's trace."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace import TracerProvider

from hybrid.client import build_request
from hybrid.serving.grpc_shell import request_of
from hybrid.telemetry import tracing

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Context:
    """What request_of reads of a servicer context (grpc's, or Ray Serve's)."""

    def __init__(self, metadata, remaining_s=None):
        self.metadata = metadata
        self.remaining_s = remaining_s

    def invocation_metadata(self):
        return self.metadata

    def time_remaining(self):
        return self.remaining_s


@pytest.fixture
def tracing_on():
    tracing.use_provider(TracerProvider())
    yield
    tracing.turn_off()


def test_while_tracing_the_trace_headers_come_with_the_request_and_nothing_else(tracing_on):
    metadata = (("traceparent", PARENT), ("tracestate", "vendor=1"), ("hybrid-timeout-ms", "2000"), ("x-other", "y"))
    request = request_of(build_request("hi"), Context(metadata))
    assert request.trace_carrier == {"traceparent": PARENT, "tracestate": "vendor=1"}
    assert 1.5 < request.remaining_s() <= 2.0


def test_while_tracing_a_call_without_trace_headers_carries_none(tracing_on):
    assert request_of(build_request("hi"), Context(())).trace_carrier is None


def test_off_the_trace_headers_are_left_behind_and_the_deadline_still_taken():
    request = request_of(build_request("hi"), Context((("traceparent", PARENT),), remaining_s=1.0))
    assert request.trace_carrier is None
    assert request.deadline is not None and 0.5 < request.deadline - time.monotonic() <= 1.0
