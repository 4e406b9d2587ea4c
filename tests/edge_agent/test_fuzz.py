"""Fuzzing a real edge agent over gRPC: any GenerateRequest and any bytes are answered or refused with a status
the caller can act on, never INTERNAL or UNKNOWN, and the agent keeps serving. A little of each answer is read
and the rest cancelled, so the model's time stays short."""

from __future__ import annotations

import os

import grpc
from hypothesis import HealthCheck, given, settings

from hybrid.client import build_request
from tests.fuzzing import SERVER_FAULTS, generate_requests, raw_requests, send_raw

# Examples per kind of input; docs/fuzzing.md records a run of many more (HYBRID_FUZZ_EXAMPLES).
FUZZ = settings(
    max_examples=int(os.environ.get("HYBRID_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


def still_answers(channel: grpc.Channel) -> bool:
    return (
        send_raw(channel, build_request("hello", max_new_tokens=2).SerializeToString(), timeout_s=60)
        == grpc.StatusCode.OK
    )


def test_any_generate_request_or_bytes_are_never_a_server_fault_on_an_edge_agent(edge_agent):
    with grpc.insecure_channel(edge_agent.address) as channel:

        @FUZZ
        @given(message=generate_requests)
        def messages(message):
            assert send_raw(channel, message.SerializeToString(), timeout_s=30) not in SERVER_FAULTS, message

        @FUZZ
        @given(raw=raw_requests())
        def raw_bytes(raw):
            assert send_raw(channel, raw, timeout_s=30) not in SERVER_FAULTS, raw

        messages()
        raw_bytes()
        assert still_answers(channel)
