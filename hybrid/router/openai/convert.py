"""An OpenAI request and its headers as the router's own: a ``pb.GenerateRequest`` and its GenerationRequest.

The body is built into a wire request by ``hybrid.client.build_request`` and validated by
``hybrid.protocol.request_from_proto``, exactly as a gRPC caller's would be. Hybrid's own inputs come
as headers: ``x-hybrid-priority``, ``x-hybrid-affinity-key`` and ``x-hybrid-timeout-ms``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping

from hybrid.client import build_request
from hybrid.errors import InvalidRequestError
from hybrid.protocol import GenerationRequest, request_from_proto
from hybrid.router.openai.errors import InvalidFieldError
from hybrid.router.openai.schemas import MAX_USER_CHARS, ChatCompletionRequest, ChatMessage, CompletionRequest
from hybrid.telemetry import tracing
from hybrid.v1 import inference_pb2 as pb

# The time budget of a request without an x-hybrid-timeout-ms header.
DEFAULT_TIMEOUT_S = 120.0
PRIORITY_HEADER = "x-hybrid-priority"
AFFINITY_HEADER = "x-hybrid-affinity-key"
TIMEOUT_HEADER = "x-hybrid-timeout-ms"
_PRIORITIES = ("realtime", "interactive", "batch")


def routed_request(
    body: ChatCompletionRequest | CompletionRequest, headers: Mapping[str, str]
) -> tuple[pb.GenerateRequest, GenerationRequest]:
    """The wire request for the data plane and its validated form, with the deadline the headers ask for."""
    deadline = time.monotonic() + timeout_s(headers)
    message = generate_request(body, headers)
    request = request_from_proto(message, deadline)
    if tracing.tracer() is not None:
        request.trace_carrier = tracing.carrier_of(headers.items())
    return message, request


def generate_request(body: ChatCompletionRequest | CompletionRequest, headers: Mapping[str, str]) -> pb.GenerateRequest:
    if isinstance(body, ChatCompletionRequest):
        prompt, messages = None, chat_messages(body.messages)
        max_tokens = body.max_completion_tokens or body.max_tokens
    else:
        if not isinstance(body.prompt, str):
            raise InvalidFieldError(
                "prompt is a list: one prompt per request is served, send it as one string "
                "(and the others as separate requests)",
                param="prompt",
            )
        prompt, messages, max_tokens = body.prompt, None, body.max_tokens
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return build_request(
        prompt,
        messages,
        max_new_tokens=max_tokens or 0,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop,
        priority=_priority(body, headers),
        model=body.model or "",
        request_id=uuid.uuid4().hex,
        affinity_key=_affinity_key(body, headers),
    )


def _priority(body: ChatCompletionRequest | CompletionRequest, headers: Mapping[str, str]) -> str:
    priority = (headers.get(PRIORITY_HEADER) or body.priority or "interactive").strip().lower()
    if priority not in _PRIORITIES:
        raise InvalidRequestError(
            f"priority {priority!r} (header {PRIORITY_HEADER} or body field priority) is unknown: "
            f"use {', '.join(_PRIORITIES)}"
        )
    return priority


def _affinity_key(body: ChatCompletionRequest | CompletionRequest, headers: Mapping[str, str]) -> str:
    key = headers.get(AFFINITY_HEADER) or body.user or ""
    if len(key) > MAX_USER_CHARS:
        raise InvalidRequestError(
            f"header {AFFINITY_HEADER} is {len(key)} characters long: shorten it to {MAX_USER_CHARS} at most"
        )
    return key


def timeout_s(headers: Mapping[str, str]) -> float:
    raw = headers.get(TIMEOUT_HEADER)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        milliseconds = float(raw)
    except ValueError:
        milliseconds = math.nan
    if not math.isfinite(milliseconds) or milliseconds <= 0:
        raise InvalidRequestError(f"header {TIMEOUT_HEADER} is {raw!r}: give a positive number of milliseconds")
    return milliseconds / 1000


def chat_messages(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """The conversation as the wire carries it: text only, one string per message."""
    converted = []
    for index, message in enumerate(messages):
        content = message.content
        if isinstance(content, list):
            texts = []
            for part_index, part in enumerate(content):
                where = f"messages[{index}].content[{part_index}]"
                if part.type != "text" or part.text is None:
                    raise InvalidFieldError(f"{where} is of type {part.type!r}: only text parts are served", where)
                if part.model_extra:
                    extra = next(iter(part.model_extra))
                    raise InvalidFieldError(f"{where}.{extra} is not supported by this server: remove it", where)
                texts.append(part.text)
            content = "".join(texts)
        # Newer OpenAI clients call the system role "developer".
        role = "system" if message.role == "developer" else message.role
        converted.append({"role": role, "content": content or ""})
    return converted
