"""The data plane's chunks as OpenAI objects: a whole completion, or Server-Sent Events chunk by chunk.

Hybrid's own outputs travel in a ``hybrid`` field of the final object or chunk (the request id, where
the answer was served, its timing) and in ``x-hybrid-tier`` / ``x-hybrid-replica`` response headers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from hybrid.v1 import inference_pb2 as pb

_FINISH = {pb.STOP: "stop", pb.LENGTH: "length"}


def sse(payload: dict[str, Any] | str) -> str:
    """One Server-Sent Event: a JSON object, or a bare word such as ``[DONE]``."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"


def tier_name(served_by: pb.ServedBy) -> str:
    return pb.Tier.Name(served_by.tier).lower() if served_by.tier else ""


class Answer:
    """One answer, chat or text completion, rendered whole or chunk by chunk in OpenAI's formats.

    ``model_of`` names the model of a replica, for requests that leave the model to the router.
    """

    def __init__(self, chat: bool, request_id: str, model: str, include_usage: bool, model_of: Callable[[str], str]):
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + request_id
        self.request_id = request_id
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.model_of = model_of
        self.text: list[str] = []
        self.served_by: pb.ServedBy | None = None
        self.last: pb.GenerateResponse | None = None
        self._role_sent = False

    def observe(self, chunk: pb.GenerateResponse) -> None:
        """Notes where the answer is served and its last chunk; the text is the caller's."""
        if chunk.HasField("served_by") and self.served_by is None:
            self.served_by = chunk.served_by
            self.model = self.model or self.model_of(chunk.served_by.replica_id)
        if chunk.finish_reason:
            self.last = chunk

    def add(self, chunk: pb.GenerateResponse) -> None:
        self.observe(chunk)
        self.text.append(chunk.text)

    def headers(self) -> dict[str, str]:
        if self.served_by is None:
            return {}
        return {"x-hybrid-tier": tier_name(self.served_by), "x-hybrid-replica": self.served_by.replica_id}

    def usage(self) -> dict[str, int]:
        usage = self.last.usage if self.last is not None else pb.Usage()
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        }

    def extras(self) -> dict[str, Any]:
        """The ``hybrid`` field: where the answer was served and how long it took."""
        served = self.served_by or pb.ServedBy()
        timing = self.last.timing if self.last is not None else pb.Timing()
        return {
            "request_id": self.request_id,
            "served_by": {
                "tier": tier_name(served),
                "replica_id": served.replica_id,
                "region": served.region,
                "precision": served.precision,
            },
            "timing": {
                "queue_ms": timing.queue_ms,
                "time_to_first_token_ms": timing.time_to_first_token_ms,
                "total_ms": timing.total_ms,
            },
        }

    def whole(self) -> dict[str, Any]:
        text = "".join(self.text)
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice |= {"logprobs": None, "finish_reason": self._finish_reason()}
        obj = "chat.completion" if self.chat else "text_completion"
        return self._head(obj) | {"choices": [choice], "usage": self.usage(), "hybrid": self.extras()}

    def events(self, chunk: pb.GenerateResponse) -> list[dict[str, Any]]:
        """The SSE events one data-plane chunk becomes."""
        self.observe(chunk)
        events = []
        if self.chat and not self._role_sent:
            self._role_sent = True
            events.append(self._event({"role": "assistant", "content": ""}))
        if chunk.text:
            events.append(self._event({"content": chunk.text} if self.chat else chunk.text))
        if chunk.finish_reason:
            final = self._event({} if self.chat else "", self._finish_reason())
            final["hybrid"] = self.extras()
            events.append(final)
            if self.include_usage:
                events.append(self._head(self._chunk_object()) | {"choices": [], "usage": self.usage()})
        return events

    def _finish_reason(self) -> str:
        return _FINISH.get(self.last.finish_reason, "stop") if self.last is not None else "stop"

    def _chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def _head(self, obj: str) -> dict[str, Any]:
        head: dict[str, Any] = {"id": self.id, "object": obj, "created": self.created, "model": self.model}
        if self.chat:
            head["system_fingerprint"] = None
        return head

    def _event(self, piece: str | dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": piece} if self.chat else {"index": 0, "text": piece}
        choice |= {"logprobs": None, "finish_reason": finish_reason}
        event = self._head(self._chunk_object()) | {"choices": [choice]}
        if self.include_usage:
            event["usage"] = None
        return event
