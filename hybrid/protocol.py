"""The transport-free data plane: validated requests and response chunks.

gRPC servicers, the OpenAI HTTP front and Ray Serve deployments convert their wire messages to
these types and back; the engines and the router only ever see these.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field, replace
from enum import IntEnum

from hybrid import constants
from hybrid.errors import InvalidRequestError
from hybrid.v1 import inference_pb2 as pb

_ROLES = ("system", "user", "assistant")


class Priority(IntEnum):
    """Lower value is served first. Mirrors hybrid.v1.Priority without the unspecified value."""

    REALTIME = 1
    INTERACTIVE = 2
    BATCH = 3

    @classmethod
    def names(cls) -> list[str]:
        """The lower-case names clients and command lines use, most urgent first."""
        return [priority.name.lower() for priority in cls]

    @classmethod
    def parse(cls, name: str) -> Priority:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown priority {name!r}: use {', '.join(cls.names())}") from None


class Tier(IntEnum):
    EDGE = pb.EDGE
    PRIVATE = pb.PRIVATE
    PUBLIC = pb.PUBLIC

    @classmethod
    def parse(cls, name: str) -> Tier:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown tier {name!r}: use edge, private or public") from None


class FinishReason(IntEnum):
    STOP = pb.STOP
    LENGTH = pb.LENGTH


@dataclass(frozen=True)
class ServedBy:
    tier: Tier
    replica_id: str
    region: str
    precision: str

    def to_proto(self) -> pb.ServedBy:
        return pb.ServedBy(
            tier=int(self.tier), replica_id=self.replica_id, region=self.region, precision=self.precision
        )


@dataclass
class GenerationRequest:
    """A request that passed validation. ``deadline`` is absolute, on time.monotonic()."""

    request_id: str
    model: str
    prompt: str | None
    messages: list[dict[str, str]] | None
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    priority: Priority
    affinity_key: str = ""
    client_region: str = ""
    require_full_precision: bool = False
    deadline: float | None = None
    arrived_at: float = field(default_factory=time.monotonic)
    # The caller's W3C trace headers (traceparent, tracestate), kept only while this process traces.
    trace_carrier: dict[str, str] | None = None

    def remaining_s(self, now: float | None = None) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - (time.monotonic() if now is None else now)


@dataclass
class Chunk:
    """One streamed piece of an answer. The last one carries finish_reason, usage and timing."""

    request_id: str
    text: str
    token_ids: list[int]
    served_by: ServedBy | None = None
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    queue_ms: float = 0.0
    time_to_first_token_ms: float = 0.0
    total_ms: float = 0.0

    @property
    def is_last(self) -> bool:
        return self.finish_reason is not None

    def followed_by(self, later: Chunk) -> Chunk:
        """This chunk and the next one of the same answer as one chunk."""
        return replace(later, text=self.text + later.text, token_ids=self.token_ids + later.token_ids)

    def to_proto(self) -> pb.GenerateResponse:
        message = pb.GenerateResponse(request_id=self.request_id, text=self.text, token_ids=self.token_ids)
        if self.served_by is not None:
            message.served_by.CopyFrom(self.served_by.to_proto())
        if self.finish_reason is not None:
            message.finish_reason = int(self.finish_reason)
            message.usage.prompt_tokens = self.prompt_tokens
            message.usage.completion_tokens = self.completion_tokens
            message.timing.queue_ms = self.queue_ms
            message.timing.time_to_first_token_ms = self.time_to_first_token_ms
            message.timing.total_ms = self.total_ms
        return message


def _check_float(value: float, name: str, low: float, high: float, low_open: bool = False) -> float:
    if not math.isfinite(value):
        raise InvalidRequestError(f"{name} must be a finite number, got {value}")
    if (value <= low if low_open else value < low) or value > high:
        interval = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise InvalidRequestError(f"{name} must be in {interval}, got {value:g}")
    return float(value)


def _preview(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_length(name: str, value: str, limit: int, advice: str = "shorten it") -> None:
    """Strings a request carries are echoed or held: an unbounded one would cost every chunk or the router."""
    if len(value) > limit:
        raise InvalidRequestError(f"{name} is {len(value)} characters long; the limit is {limit}: {advice}")


def _messages_of(message: pb.GenerateRequest) -> list[dict[str, str]] | None:
    """The chat messages, or None for a plain prompt; checks that exactly one of the two says something."""
    has_prompt = bool(message.prompt)
    has_messages = len(message.messages) > 0
    if has_prompt == has_messages:
        raise InvalidRequestError(
            "give exactly one of prompt or messages" + (" (both were set)" if has_prompt else " (the prompt is empty)")
        )
    messages = None
    if has_messages:
        messages = []
        for index, chat in enumerate(message.messages):
            if chat.role not in _ROLES:
                raise InvalidRequestError(f"messages[{index}].role is {chat.role!r}: use one of {', '.join(_ROLES)}")
            messages.append({"role": chat.role, "content": chat.content})
        if not any(m["content"].strip() for m in messages):
            raise InvalidRequestError("every message is empty: give the model something to answer")
    elif not message.prompt.strip():
        raise InvalidRequestError("the prompt is only whitespace: give the model something to answer")
    characters = len(message.prompt) + sum(len(m.content) for m in message.messages)
    if characters > constants.MAX_PROMPT_CHARS:
        raise InvalidRequestError(
            f"the prompt is {characters} characters long; the limit is {constants.MAX_PROMPT_CHARS}: shorten it"
        )
    return messages


def _max_new_tokens_of(message: pb.GenerateRequest) -> int:
    max_new_tokens = message.max_new_tokens or constants.DEFAULT_MAX_NEW_TOKENS
    if max_new_tokens < 0 or max_new_tokens > constants.MAX_NEW_TOKENS_LIMIT:
        raise InvalidRequestError(
            f"max_new_tokens must be between 1 and {constants.MAX_NEW_TOKENS_LIMIT} (0 means the default "
            f"{constants.DEFAULT_MAX_NEW_TOKENS}), got {message.max_new_tokens}"
        )
    return max_new_tokens


def _sampling_of(message: pb.GenerateRequest) -> tuple[float, float]:
    """Temperature and top_p, with their defaults (greedy, the whole distribution) where unset."""
    temperature = message.temperature if message.HasField("temperature") else 0.0
    temperature = _check_float(temperature, "temperature", 0.0, constants.MAX_TEMPERATURE)
    top_p = message.top_p if message.HasField("top_p") else 1.0
    top_p = _check_float(top_p, "top_p", 0.0, 1.0, low_open=True)
    return temperature, top_p


def _stop_of(message: pb.GenerateRequest) -> list[str]:
    stop = list(message.stop)
    if len(stop) > constants.MAX_STOP_STRINGS or any(not s for s in stop):
        raise InvalidRequestError(
            f"stop takes at most {constants.MAX_STOP_STRINGS} non-empty strings, got {len(stop)} ({_preview(stop)})"
        )
    for index, text in enumerate(stop):
        _check_length(f"stop[{index}]", text, constants.MAX_STOP_STRING_CHARS)
    return stop


def _check_strings(message: pb.GenerateRequest) -> None:
    _check_length("request_id", message.request_id, constants.MAX_REQUEST_ID_CHARS)
    _check_length("affinity_key", message.affinity_key, constants.MAX_AFFINITY_KEY_CHARS, "hash long keys first")
    _check_length("client_region", message.client_region, constants.MAX_CLIENT_REGION_CHARS)
    _check_length("model", message.model, constants.MAX_MODEL_NAME_CHARS)


def _check_enums(message: pb.GenerateRequest) -> None:
    if message.priority not in pb.Priority.values():
        raise InvalidRequestError(f"priority {message.priority} is unknown: use REALTIME, INTERACTIVE or BATCH")
    if message.min_precision not in pb.MinPrecision.values():
        raise InvalidRequestError(f"min_precision {message.min_precision} is unknown: use ANY or FULL")


def request_from_proto(message: pb.GenerateRequest, deadline: float | None = None) -> GenerationRequest:
    """Validates a wire request. Raises InvalidRequestError with a message that says what to change."""
    messages = _messages_of(message)
    max_new_tokens = _max_new_tokens_of(message)
    temperature, top_p = _sampling_of(message)
    stop = _stop_of(message)
    _check_strings(message)
    _check_enums(message)
    return GenerationRequest(
        request_id=message.request_id or uuid.uuid4().hex,
        model=message.model,
        prompt=message.prompt if messages is None else None,
        messages=messages,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=message.seed if message.HasField("seed") else None,
        stop=stop,
        priority=Priority(message.priority) if message.priority else Priority.INTERACTIVE,
        affinity_key=message.affinity_key,
        client_region=message.client_region,
        require_full_precision=message.min_precision == pb.FULL,
        deadline=deadline,
    )
