"""The router's OpenAI-compatible HTTP front, driven by the official openai client and by raw HTTP.

A real router in front of the session's real edge agent; answers are kept short (the model runs on CPU).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import openai
import pytest

from hybrid.client import HybridClient
from tests.conftest import PROMPTS

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def client(edge_router):
    with openai.OpenAI(
        base_url=f"http://{edge_router.http_address}/v1", api_key="unused", max_retries=0, timeout=120
    ) as client:
        yield client


def chat(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def post(edge_router, path: str, body: bytes | dict, headers: dict[str, str] | None = None):
    """(status, headers, body text) of a raw POST."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://{edge_router.http_address}{path}",
        data=data,
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def requests_counted(edge_router, request_class: str, outcome: str) -> float:
    registry = edge_router.router.dataplane.metrics.registry
    labels = {"tier": "edge", "request_class": request_class, "outcome": outcome}
    return registry.get_sample_value("hybrid_router_requests_total", labels) or 0.0


def test_streamed_chat_completion_through_the_openai_client(client, edge_router, edge_agent):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=chat(PROMPTS[0]),
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    text = "".join(pieces)
    assert text.strip() and len(pieces) > 1, "tokens must be streamed as they come, not gathered"
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert final.choices[0].finish_reason in ("stop", "length")
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert final.model == MODEL
    hybrid = final.model_extra["hybrid"]
    assert hybrid["served_by"]["tier"] == "edge"
    assert hybrid["served_by"]["replica_id"] == edge_agent.agent.replica_id
    assert hybrid["timing"]["total_ms"] > 0
    usage = chunks[-1]
    assert usage.choices == [] and 0 < usage.usage.completion_tokens <= 12
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + usage.usage.completion_tokens
    # The front passes the conversation through unchanged: the same greedy answer as straight from the replica.
    with HybridClient(edge_agent.address) as direct:
        assert text == direct.complete(messages=chat(PROMPTS[0]), max_new_tokens=12).text


def test_streamed_text_completion_is_server_sent_events_on_the_wire(edge_router):
    status, headers, body = post(
        edge_router, "/v1/completions", {"model": MODEL, "prompt": "The sea is", "max_tokens": 6, "stream": True}
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert headers["x-hybrid-tier"] == "edge"
    events = body.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert {p["object"] for p in payloads} == {"text_completion"}
    assert "".join(p["choices"][0]["text"] for p in payloads).strip()
    assert [p["choices"][0]["finish_reason"] for p in payloads][:-1] == [None] * (len(payloads) - 1)
    assert payloads[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert payloads[-1]["hybrid"]["served_by"]["tier"] == "edge"


def test_non_streamed_completion_with_usage(client, edge_agent):
    raw = client.completions.with_raw_response.create(model=MODEL, prompt="The capital of France is", max_tokens=8)
    assert raw.headers["x-hybrid-tier"] == "edge"
    assert raw.headers["x-hybrid-replica"] == edge_agent.agent.replica_id
    completion = raw.parse()
    assert completion.object == "text_completion" and completion.choices[0].text.strip()
    assert completion.choices[0].finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert completion.model_extra["hybrid"]["served_by"]["precision"]


def test_models_lists_the_replicas_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert models.data[0].owned_by == "hybrid"


def test_bad_requests_are_400_with_what_to_change(client, edge_router):
    with pytest.raises(openai.BadRequestError) as failure:
        client.chat.completions.create(model=MODEL, messages=chat("hi"), temperature=9, max_tokens=4)
    assert failure.value.status_code == 400 and "temperature" in failure.value.body["message"]
    with pytest.raises(openai.BadRequestError) as failure:
        client.completions.create(model=MODEL, prompt=["one", "two"], max_tokens=4)
    assert "prompt" in failure.value.body["message"]
    # A field the router does not implement is refused by name, never ignored.
    with pytest.raises(openai.BadRequestError) as failure:
        client.chat.completions.create(model=MODEL, messages=chat("hi"), response_format={"type": "json_object"})
    assert failure.value.body["param"] == "response_format" and "not supported" in failure.value.body["message"]
    # Malformed JSON and wrong types are 400 too (not FastAPI's 422), and say what is wrong.
    status, _, body = post(edge_router, "/v1/completions", b"{not json")
    assert status == 400 and "JSON" in json.loads(body)["error"]["message"]
    status, _, body = post(edge_router, "/v1/chat/completions", {"messages": "hi"})
    assert status == 400 and "messages" in json.loads(body)["error"]["message"]
    status, _, body = post(edge_router, "/v1/completions", {"prompt": "hi"}, {"x-hybrid-priority": "urgent"})
    assert status == 400 and "x-hybrid-priority" in json.loads(body)["error"]["message"]


def test_no_tier_with_room_is_429_with_retry_after(edge_router):
    # BATCH never goes to the edge unless its prompt is hot: with no cloud tier, nothing has room for it.
    body = {"prompt": f"a cold prompt {uuid.uuid4().hex}", "priority": "batch"}
    status, headers, body = post(edge_router, "/v1/completions", body)
    error = json.loads(body)["error"]
    assert status == 429 and error["code"] == "resource_exhausted"
    assert int(headers["retry-after"]) >= 1 and error["retry_after_ms"] >= 100


def test_priority_header_realtime_is_routed_as_realtime(client, edge_router):
    before = requests_counted(edge_router, "REALTIME", "ok")
    completion = client.chat.completions.create(
        model=MODEL, messages=chat(PROMPTS[1]), max_tokens=4, extra_headers={"x-hybrid-priority": "realtime"}
    )
    assert completion.choices[0].message.content
    assert requests_counted(edge_router, "REALTIME", "ok") == before + 1


def test_a_client_that_leaves_mid_stream_cancels_its_request(client, edge_router):
    before = requests_counted(edge_router, "REALTIME", "cancelled")
    stream = client.chat.completions.create(
        model=MODEL,
        messages=chat(PROMPTS[2]),
        max_tokens=16,
        stream=True,
        extra_headers={"x-hybrid-priority": "realtime"},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    ledger = edge_router.router.dataplane.ledger
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        requests_counted(edge_router, "REALTIME", "cancelled") == before or ledger.total_outstanding()
    ):
        time.sleep(0.05)
    assert requests_counted(edge_router, "REALTIME", "cancelled") == before + 1, "the routed call must be cancelled"
    assert not ledger.total_outstanding()
    # The router is none the worse for it.
    answer = client.chat.completions.create(model=MODEL, messages=chat(PROMPTS[0]), max_tokens=4)
    assert answer.choices[0].message.content
