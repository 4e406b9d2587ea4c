"""Every request field is honoured or refused by name: nothing a client asks for is silently ignored."""

from __future__ import annotations

import openai
import pytest

from tests.hybrid.router.openai.conftest import MODEL, call, chat_body

# A value of each OpenAI chat field that is not implemented here and that asks for something.
UNIMPLEMENTED_CHAT = {
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "functions": [{"name": "f", "parameters": {}}],
    "function_call": "auto",
    "response_format": {"type": "json_object"},
    "logprobs": True,
    "top_logprobs": 3,
    "n": 2,
    "presence_penalty": 0.5,
    "frequency_penalty": -1,
    "logit_bias": {"50256": -100},
    "audio": {"voice": "alloy", "format": "wav"},
    "modalities": ["text", "audio"],
    "prediction": {"type": "content", "content": "x"},
    "store": True,
    "metadata": {"team": "a"},
    "service_tier": "flex",
    "reasoning_effort": "low",
    "verbosity": "low",
    "web_search_options": {},
}
UNIMPLEMENTED_COMPLETION = {"best_of": 2, "logprobs": 0, "echo": True, "suffix": "end", "n": 3}
# Values of the same fields that ask for nothing, which OpenAI clients may well send.
INERT_CHAT = {
    "tools": [],
    "tool_choice": "none",
    "response_format": {"type": "text"},
    "logprobs": False,
    "n": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0.0,
    "logit_bias": {},
    "modalities": ["text"],
    "store": False,
    "service_tier": "auto",
    "parallel_tool_calls": None,
}


@pytest.mark.parametrize("name", sorted(UNIMPLEMENTED_CHAT))
async def test_an_unimplemented_chat_field_is_refused_by_name(front, dataplane, name):
    answer = await call(front, "/v1/chat/completions", chat_body(**{name: UNIMPLEMENTED_CHAT[name]}))
    assert answer.status == 400
    assert answer.error["param"] == name and answer.error["type"] == "invalid_request_error"
    assert answer.error["message"].startswith(f"{name} is not supported by this server: remove it")
    assert not dataplane.calls, "a refused request must not be routed"


@pytest.mark.parametrize("name", sorted(UNIMPLEMENTED_COMPLETION))
async def test_an_unimplemented_completion_field_is_refused_by_name(front, dataplane, name):
    body = {"prompt": "The sea is", name: UNIMPLEMENTED_COMPLETION[name]}
    answer = await call(front, "/v1/completions", body)
    assert answer.status == 400 and answer.error["param"] == name
    assert f"{name} is not supported by this server: remove it" in answer.error["message"]
    assert not dataplane.calls


async def test_the_openai_client_learns_that_tools_json_mode_and_logprobs_are_not_served(client, dataplane):
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    attempts = [
        ("tools", {"tools": [tool]}),
        ("response_format", {"response_format": {"type": "json_object"}}),
        ("logprobs", {"logprobs": True, "top_logprobs": 2}),
    ]
    for name, fields in attempts:
        with pytest.raises(openai.BadRequestError) as refusal:
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], **fields)
        assert refusal.value.status_code == 400 and f"{name} is not supported" in refusal.value.body["message"]
    assert not dataplane.calls


async def test_several_refusals_are_named_together(front):
    answer = await call(front, "/v1/chat/completions", chat_body(tools=[{"type": "function"}], n=4))
    assert answer.status == 400
    assert "tools is not supported" in answer.error["message"] and "n is not supported" in answer.error["message"]


async def test_values_that_ask_for_nothing_are_served(front, dataplane):
    answer = await call(front, "/v1/chat/completions", chat_body(**INERT_CHAT))
    assert answer.status == 200, answer.text
    assert len(dataplane.calls) == 1


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_an_unknown_field_is_refused_by_name(front, dataplane, path):
    body = chat_body(frobnicate=1) if "chat" in path else {"prompt": "hi", "frobnicate": 1}
    answer = await call(front, path, body)
    assert answer.status == 400 and answer.error["param"] == "frobnicate"
    assert answer.error["message"] == "frobnicate is not a field this server knows: remove it"
    assert not dataplane.calls


async def test_unknown_and_unimplemented_fields_of_messages_and_stream_options_are_refused(front, dataplane):
    named = {"model": MODEL, "messages": [{"role": "user", "content": "Hi", "name": "ann"}]}
    answer = await call(front, "/v1/chat/completions", named)
    assert answer.status == 400 and answer.error["param"] == "messages[0].name"
    assert answer.error["message"].startswith("messages[0].name is not supported by this server: remove it")
    odd = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "x", "y": 1}]}
    answer = await call(front, "/v1/chat/completions", odd)
    assert answer.status == 400 and "messages[1].y is not a field this server knows" in answer.error["message"]
    answer = await call(
        front, "/v1/chat/completions", chat_body(stream=True, stream_options={"include_obfuscation": 1})
    )
    assert answer.status == 400 and "stream_options.include_obfuscation" in answer.error["message"]
    part = {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}
    answer = await call(front, "/v1/chat/completions", {"messages": [{"role": "user", "content": [part]}]})
    assert answer.status == 400 and "messages[0].content[0].cache_control" in answer.error["message"]
    assert not dataplane.calls


async def test_a_user_longer_than_256_characters_is_refused(front, dataplane):
    answer = await call(front, "/v1/chat/completions", chat_body(user="u" * 257))
    assert answer.status == 400 and answer.error["param"] == "user"
    assert answer.error["message"] == "user is longer than 256 characters: shorten it"
    answer = await call(front, "/v1/chat/completions", chat_body(), {"x-hybrid-affinity-key": "k" * 257})
    assert answer.status == 400 and "x-hybrid-affinity-key" in answer.error["message"]
    assert not dataplane.calls
    answer = await call(front, "/v1/chat/completions", chat_body(user="u" * 256))
    assert answer.status == 200 and dataplane.message.affinity_key == "u" * 256


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"messages": [{"role": "user", "content": "\\udc00 trailing"}]}',
        b'{"messages": [{"role": "user", "content": "\xff"}]}',
        b'{"prompt": "hi", "temperature": NaN}',
    ],
    ids=["malformed", "lone-leading-surrogate", "lone-trailing-surrogate", "invalid-utf8", "nan"],
)
async def test_text_that_is_not_json_is_400(front, dataplane, raw):
    path = "/v1/completions" if b"prompt" in raw else "/v1/chat/completions"
    answer = await call(front, path, raw)
    assert answer.status == 400 and answer.error["code"] == "invalid_argument"
    assert "not valid JSON" in answer.error["message"] and "send a JSON object" in answer.error["message"]
    assert not dataplane.calls


async def test_a_paired_surrogate_escape_is_text(front, dataplane):
    answer = await call(front, "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}')
    assert answer.status == 200
    assert dataplane.message.messages[0].content == "\U0001f600"


@pytest.mark.parametrize(
    ("raw", "says"),
    [(b"", "the body is empty"), (b"[1, 2]", "the body is a JSON list"), (b'"hi"', "the body is a JSON str")],
)
async def test_a_body_that_is_not_an_object_is_400(front, raw, says):
    answer = await call(front, "/v1/completions", raw)
    assert answer.status == 400 and answer.error["message"].startswith(says)


async def test_wrong_types_and_missing_fields_say_where(front):
    answer = await call(front, "/v1/chat/completions", {"messages": "hi"})
    assert answer.status == 400 and answer.error["param"] == "messages" and "messages" in answer.error["message"]
    answer = await call(front, "/v1/completions", {"max_tokens": 4})
    assert answer.status == 400 and answer.error["message"] == "prompt is required"
    answer = await call(front, "/v1/completions", {"prompt": "hi", "max_tokens": 0})
    assert answer.status == 400 and answer.error["message"].startswith("max_tokens: Input should be greater")


@pytest.mark.parametrize(
    "name, value",
    [("max_tokens", True), ("stream", "yes"), ("stream", 1), ("temperature", "0.5"), ("seed", True), ("n", True)],
)
async def test_a_value_of_the_wrong_json_type_is_refused_not_coerced(front, dataplane, name, value):
    answer = await call(front, "/v1/chat/completions", chat_body(**{name: value}))
    assert answer.status == 400 and answer.error["param"] == name, answer.text
    assert not dataplane.calls
