"""The fields the front honours reach the router's wire request, and Hybrid's headers steer it."""

from __future__ import annotations

import time

import pytest

from hybrid.v1 import inference_pb2 as pb
from tests.hybrid.router.openai.conftest import MODEL, call, chat_body


async def test_sampling_fields_reach_the_wire_request(front, dataplane):
    body = chat_body(temperature=0.7, top_p=0.9, seed=42, stop="END", max_tokens=9, user="alice")
    answer = await call(front, "/v1/chat/completions", body)
    assert answer.status == 200, answer.text
    message = dataplane.message
    assert message.model == MODEL and message.max_new_tokens == 9
    assert message.temperature == pytest.approx(0.7) and message.top_p == pytest.approx(0.9)
    assert message.seed == 42 and list(message.stop) == ["END"]
    assert message.affinity_key == "alice" and message.priority == pb.INTERACTIVE
    assert [(m.role, m.content) for m in message.messages] == [("user", "Hi")]


async def test_max_completion_tokens_wins_over_max_tokens(front, dataplane):
    await call(front, "/v1/chat/completions", chat_body(max_tokens=20, max_completion_tokens=5))
    assert dataplane.message.max_new_tokens == 5


async def test_text_parts_and_the_developer_role_are_served_as_plain_messages(front, dataplane):
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]
    body = {"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": parts}]}
    answer = await call(front, "/v1/chat/completions", body)
    assert answer.status == 200
    assert [(m.role, m.content) for m in dataplane.message.messages] == [
        ("system", "Be brief."),
        ("user", "Hello there"),
    ]


async def test_an_image_part_is_refused(front, dataplane):
    parts = [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]
    answer = await call(front, "/v1/chat/completions", {"messages": [{"role": "user", "content": parts}]})
    assert answer.status == 400 and "only text parts are served" in answer.error["message"]
    assert not dataplane.calls


async def test_completion_prompt_and_stop_list(front, dataplane):
    answer = await call(front, "/v1/completions", {"prompt": "The sea is", "stop": ["\n", "."], "max_tokens": 3})
    assert answer.status == 200
    assert dataplane.message.prompt == "The sea is" and list(dataplane.message.stop) == ["\n", "."]
    answer = await call(front, "/v1/completions", {"prompt": ["one", "two"]})
    assert answer.status == 400 and answer.error["param"] == "prompt"


async def test_hybrid_headers_set_priority_affinity_and_deadline(front, dataplane):
    headers = {"x-hybrid-priority": "Realtime", "x-hybrid-affinity-key": "conv-7", "x-hybrid-timeout-ms": "1500"}
    before = time.monotonic()
    answer = await call(front, "/v1/chat/completions", chat_body(user="alice", priority="batch"), headers)
    assert answer.status == 200
    routed, message = dataplane.calls[-1]
    assert message.priority == pb.REALTIME and message.affinity_key == "conv-7"
    assert before + 1.0 < routed.deadline <= time.monotonic() + 1.5


async def test_priority_in_the_body_without_the_header(front, dataplane):
    await call(front, "/v1/completions", {"prompt": "hi", "priority": "batch"})
    assert dataplane.message.priority == pb.BATCH


@pytest.mark.parametrize(
    ("headers", "names"),
    [({"x-hybrid-priority": "urgent"}, "x-hybrid-priority"), ({"x-hybrid-timeout-ms": "-5"}, "x-hybrid-timeout-ms")],
)
async def test_bad_hybrid_headers_are_400(front, dataplane, headers, names):
    answer = await call(front, "/v1/completions", {"prompt": "hi"}, headers)
    assert answer.status == 400 and names in answer.error["message"]
    assert not dataplane.calls


async def test_values_the_router_refuses_are_400_with_what_to_change(front, dataplane):
    answer = await call(front, "/v1/chat/completions", chat_body(temperature=9))
    assert answer.status == 400 and "temperature" in answer.error["message"]
    assert not dataplane.calls
