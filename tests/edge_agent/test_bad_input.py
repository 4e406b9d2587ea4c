"""Every bad input gets a clear status and message, and the agent keeps serving."""

from __future__ import annotations

import threading

import grpc
import pytest

from hybrid.client import HybridClient, RequestFailed
from hybrid.v1 import inference_pb2 as pb
from tests.conftest import start_agent

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        (dict(prompt=""), INVALID, "prompt is empty"),
        (dict(prompt="   "), INVALID, "only whitespace"),
        (dict(prompt="hi", messages=[{"role": "user", "content": "hi"}]), INVALID, "both were set"),
        (dict(messages=[{"role": "wizard", "content": "hi"}]), INVALID, "use one of system, user, assistant"),
        (dict(prompt="x" * 70_000), INVALID, "limit is 64000"),
        (dict(prompt="hi", max_new_tokens=-5), INVALID, "max_new_tokens must be between 1 and 4096"),
        (dict(prompt="hi", max_new_tokens=1_000_000), INVALID, "max_new_tokens must be between 1 and 4096"),
        (dict(prompt="hi", max_new_tokens=4000), INVALID, "lower max_new_tokens to at most"),
        (dict(prompt="hi", temperature=-1.0), INVALID, "temperature must be in [0.0, 2.0]"),
        (dict(prompt="hi", temperature=float("nan")), INVALID, "temperature must be a finite number"),
        (dict(prompt="hi", top_p=0.0), INVALID, "top_p must be in (0.0, 1.0]"),
        (dict(prompt="hi", top_p=1.5), INVALID, "top_p must be in (0.0, 1.0]"),
        (dict(prompt="hi", priority=9), INVALID, "priority 9 is unknown"),
        (dict(prompt="hi", model="gpt-9"), grpc.StatusCode.NOT_FOUND, "this replica serves 'smollm2-135m'"),
        (dict(prompt="hi", full_precision=True), grpc.StatusCode.FAILED_PRECONDITION, "runs int8-b32"),
    ],
)
def test_bad_request_is_refused_with_a_message_that_says_what_to_change(edge_agent, params, code, words):
    with HybridClient(edge_agent.address) as client:
        with pytest.raises(RequestFailed) as failure:
            client.complete(**params)
        assert failure.value.code == code
        assert words in failure.value.details
        # The agent is still fine.
        assert client.complete(prompt="Hello", max_new_tokens=2).finish_reason in ("STOP", "LENGTH")


def test_prompt_beyond_the_context_window(edge_agent):
    long_prompt = "word " * 3000  # about 3000 tokens, under the character limit
    with HybridClient(edge_agent.address) as client:
        with pytest.raises(RequestFailed) as failure:
            client.complete(prompt=long_prompt, max_new_tokens=4)
    assert failure.value.code == INVALID
    assert "context window is 2048: shorten it" in failure.value.details


def test_malformed_bytes_on_the_wire(edge_agent):
    with grpc.insecure_channel(edge_agent.address) as channel:
        raw = channel.unary_stream("/hybrid.v1.Inference/Generate", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as failure:
            list(raw(b"\xff\xff\xff\x07garbage", timeout=10))
    assert failure.value.code() == INVALID
    assert "not a valid hybrid.v1.GenerateRequest" in failure.value.details()


# A count the model carries on to the token limit (seconds on the CPU), so that the slot stays taken while the
# test queues behind it; a question's answer can end within the deadlines below.
LONG_ANSWER = "1, 2, 3, 4, 5, 6, 7, 8,"

def test_overload_answers_resource_exhausted_with_a_retry_hint(int8_artifact, tmp_path):
    agent = start_agent(int8_artifact, tmp_path, max_batch_size=1, max_queued_requests=1, max_wait_ms=0)
    try:
        with HybridClient(agent.address) as client:
            running = client.stream(prompt=LONG_ANSWER, max_new_tokens=200)
            next(running)  # occupies the only slot
            queued = client.stream(prompt="Hello", max_new_tokens=2)
            results: list = []
            waiter = threading.Thread(target=lambda: results.append(list(queued)))
            waiter.start()
            deadline_wait = 0
            while len(agent.agent.batcher) < 1 and deadline_wait < 500:
                threading.Event().wait(0.01)
                deadline_wait += 1
            with pytest.raises(RequestFailed) as failure:
                client.complete(prompt="One more", max_new_tokens=2)
            running.close()
            waiter.join(timeout=60)
        assert failure.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue full" in failure.value.details
        assert failure.value.retry_after_ms is not None and failure.value.retry_after_ms >= 100
        # The queued request was not lost.
        assert results and results[0][-1].finish_reason in (pb.STOP, pb.LENGTH)
    finally:
        agent.stop()


def test_request_whose_deadline_passes_in_the_queue_is_dropped_before_compute(int8_artifact, tmp_path):
    agent = start_agent(int8_artifact, tmp_path, max_batch_size=1, max_wait_ms=0)
    try:
        with HybridClient(agent.address) as client:
            running = client.stream(prompt=LONG_ANSWER, max_new_tokens=200)
            next(running)
            with pytest.raises(RequestFailed) as failure:
                client.complete(prompt="Hello", max_new_tokens=2, timeout_s=0.3)
            running.close()
        assert failure.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline_wait = 0
        while agent.agent.batcher.stats.expired + agent.agent.batcher.stats.cancelled < 1 and deadline_wait < 200:
            threading.Event().wait(0.01)
            deadline_wait += 1
        stats = agent.agent.batcher.stats
        assert stats.expired + stats.cancelled == 1
        assert stats.dispatched == 1, "the expired request must never reach compute"
    finally:
        agent.stop()
