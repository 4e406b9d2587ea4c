"""The data plane's chunks as OpenAI objects, whole or streamed, read back by the official client and raw."""

from __future__ import annotations

import asyncio
import json

from hybrid.v1 import inference_pb2 as pb
from tests.hybrid.router.openai.conftest import MODEL, REPLICA, call, chat_body, chunks


async def test_a_whole_chat_completion_with_usage_and_where_it_was_served(client, dataplane):
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3
    )
    assert raw.headers["x-hybrid-tier"] == "edge" and raw.headers["x-hybrid-replica"] == REPLICA
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello, world"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_tokens": 10,
    }
    hybrid = completion.model_extra["hybrid"]
    assert hybrid["request_id"] == dataplane.calls[-1][0].request_id
    assert hybrid["served_by"] == {"tier": "edge", "replica_id": REPLICA, "region": "eu-west", "precision": "int8"}
    assert hybrid["timing"] == {"queue_ms": 1.5, "time_to_first_token_ms": 12.0, "total_ms": 40.0}


async def test_the_model_is_named_from_the_replica_when_the_request_leaves_it_out(front):
    answer = await call(front, "/v1/completions", {"prompt": "The sea is"})
    completion = json.loads(answer.text)
    assert completion["object"] == "text_completion" and completion["id"].startswith("cmpl-")
    assert completion["model"] == MODEL and completion["choices"][0]["text"] == "Hello, world"


async def test_a_streamed_chat_completion_through_the_openai_client(client, dataplane):
    dataplane.script = chunks("Hel", "lo", finish=pb.STOP)
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    events = [event async for event in stream]
    assert events[0].choices[0].delta.role == "assistant"
    assert [e.choices[0].delta.content for e in events[1:3]] == ["Hel", "lo"]
    final = events[3]
    assert final.choices[0].finish_reason == "stop" and final.model_extra["hybrid"]["served_by"]["tier"] == "edge"
    assert events[-1].choices == [] and events[-1].usage.total_tokens == 9
    assert {e.id for e in events} == {events[0].id} and all(e.object == "chat.completion.chunk" for e in events)


async def test_a_streamed_text_completion_is_server_sent_events_on_the_wire(front):
    answer = await call(front, "/v1/completions", {"prompt": "The sea is", "stream": True})
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["x-hybrid-tier"] == "edge" and answer.headers["cache-control"] == "no-cache"
    events = answer.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: ") for e in events[:-1])
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert [p["choices"][0]["text"] for p in payloads] == ["Hello", ",", " world", ""]
    assert [p["choices"][0]["finish_reason"] for p in payloads] == [None, None, None, "length"]
    assert "usage" not in payloads[0] and payloads[-1]["hybrid"]["timing"]["total_ms"] == 40.0


async def test_models_lists_the_replicas_models(client, front):
    models = await client.models.list()
    assert [(m.id, m.owned_by) for m in models.data] == [(MODEL, "hybrid")]
    answer = await call(front, f"/v1/models/{MODEL}")
    assert answer.status == 200 and json.loads(answer.text)["id"] == MODEL


async def test_a_client_that_leaves_mid_stream_closes_the_routed_request(front, dataplane):
    dataplane.script = [*chunks("a", "b")[:1], 30.0, *chunks("a", "b")[1:]]
    host, port = front.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps(chat_body(stream=True)).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body)
    assert (await asyncio.wait_for(reader.readline(), 2)).startswith(b"HTTP/1.1 200")
    await asyncio.wait_for(reader.readuntil(b'"content":"a"'), 2)
    writer.close()
    await asyncio.wait_for(dataplane.closed.wait(), 2)


async def test_a_client_that_leaves_before_a_whole_answer_closes_the_routed_request(front, dataplane):
    dataplane.script = [30.0, *chunks("a")]
    host, port = front.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps(chat_body()).encode()
    writer.write(
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
    )
    await writer.drain()
    while not dataplane.calls:
        await asyncio.sleep(0.01)
    writer.close()
    await asyncio.wait_for(dataplane.closed.wait(), 2)
