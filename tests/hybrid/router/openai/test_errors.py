"""Errors as OpenAI clients expect them: the HTTP status of the gRPC code, an error body, Retry-After."""

from __future__ import annotations

import grpc
import openai
import pytest

from hybrid import constants
from hybrid.errors import (
    DeadlineExceededError,
    HybridError,
    ModelNotFoundError,
    OverloadedError,
    PreconditionError,
    UnavailableError,
)
from hybrid.router.dataplane import ReplicaFailed
from hybrid.router.openai.errors import error_body
from tests.hybrid.router.openai.conftest import MODEL, call, chat_body, chunks


class _FullSaysItsHint(HybridError):
    """Says a wait in its message but carries none: the front must not read the message for it."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_retry_hint_is_the_errors_attribute_never_its_message():
    status, body = error_body(OverloadedError("no room", 1500))
    assert status == 429 and body["error"]["retry_after_ms"] == 1500 and body["error"]["code"] == "resource_exhausted"
    status, body = error_body(_FullSaysItsHint("full; retry after 9000 ms"))
    assert status == 429 and body["error"]["retry_after_ms"] == constants.MIN_RETRY_AFTER_MS
    status, body = error_body(ReplicaFailed(grpc.StatusCode.RESOURCE_EXHAUSTED, "retry after 9000 ms", 2500))
    assert body["error"]["retry_after_ms"] == 2500


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (ModelNotFoundError("model 'x' is not served here"), 404, "not_found_error"),
        (PreconditionError("min_precision FULL: no full-precision replica"), 400, "invalid_request_error"),
        (DeadlineExceededError("the deadline passed"), 504, "timeout_error"),
        (UnavailableError("every replica tried failed"), 503, "service_unavailable"),
        (HybridError("internal"), 500, "server_error"),
    ],
)
async def test_a_data_plane_error_becomes_its_http_status(front, dataplane, error, status, kind):
    dataplane.script = [error]
    answer = await call(front, "/v1/chat/completions", chat_body())
    assert answer.status == status
    assert answer.error["type"] == kind and answer.error["message"] == error.message
    assert answer.error["code"] == error.code.name.lower()
    assert "retry-after" not in answer.headers


async def test_overloaded_is_429_with_retry_after_from_the_hint(front, dataplane):
    dataplane.script = [OverloadedError("no tier has room for this request within its deadline", 2500)]
    answer = await call(front, "/v1/completions", {"prompt": "hi"})
    assert answer.status == 429 and answer.headers["retry-after"] == "3"
    assert answer.error["retry_after_ms"] == 2500 and answer.error["type"] == "rate_limit_error"


async def test_unavailable_with_a_hint_carries_retry_after(front, dataplane):
    dataplane.script = [ReplicaFailed(grpc.StatusCode.UNAVAILABLE, "draining", retry_after_ms=400)]
    answer = await call(front, "/v1/completions", {"prompt": "hi"})
    assert answer.status == 503 and answer.headers["retry-after"] == "1" and answer.error["retry_after_ms"] == 400


async def test_the_openai_client_sees_rate_limit_error(client, dataplane):
    dataplane.script = [OverloadedError("full", 1200)]
    with pytest.raises(openai.RateLimitError) as refusal:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert refusal.value.response.headers["retry-after"] == "2"


async def test_an_unexpected_failure_is_500_without_its_insides(front, dataplane):
    dataplane.script = [RuntimeError("secret detail")]
    answer = await call(front, "/v1/chat/completions", chat_body())
    assert answer.status == 500 and "see its log" in answer.error["message"]
    assert "secret" not in answer.text


async def test_an_error_mid_stream_is_an_error_event_then_done(front, dataplane):
    dataplane.script = [*chunks("Hel", "lo")[:1], UnavailableError("the replica went away mid-answer; retry")]
    answer = await call(front, "/v1/chat/completions", chat_body(stream=True))
    assert answer.status == 200
    events = answer.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert '"code":"unavailable"' in events[-3] and "went away mid-answer" in events[-3]


async def test_a_stream_refused_before_its_first_chunk_is_an_http_status(front, dataplane):
    dataplane.script = [OverloadedError("full", 300)]
    answer = await call(front, "/v1/completions", {"prompt": "hi", "stream": True})
    assert answer.status == 429 and answer.headers["retry-after"] == "1"
    dataplane.script = []
    answer = await call(front, "/v1/completions", {"prompt": "hi", "stream": True})
    assert answer.status == 503 and "before its first chunk" in answer.error["message"]


async def test_unknown_paths_and_models_are_404_saying_what_is_served(front):
    answer = await call(front, "/v1/embeddings", {"input": "hi"})
    assert answer.status == 404 and "POST /v1/chat/completions" in answer.error["message"]
    answer = await call(front, "/v1/models/other-model")
    assert answer.status == 404 and answer.error["code"] == "not_found" and "GET /v1/models" in answer.error["message"]
