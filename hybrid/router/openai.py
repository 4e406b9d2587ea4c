"""The router's OpenAI-compatible HTTP front: existing OpenAI clients work against the router unchanged.

    POST /v1/chat/completions   POST /v1/completions   GET /v1/models

A thin adapter over ``RouterDataPlane``, like the gRPC servicer: the body becomes a GenerateRequest
(``hybrid.client.build_request``), is validated by ``request_from_proto`` and routed by the data plane;
the chunks go back as OpenAI objects, or as Server-Sent Events with ``stream: true``. Hybrid's own
inputs come as headers (``x-hybrid-priority``, ``x-hybrid-affinity-key``, ``x-hybrid-timeout-ms``),
its outputs in a ``hybrid`` field of the final object or chunk (where the answer was served, timing).
Errors are OpenAI-style ``{"error": {...}}`` bodies, their HTTP status mapped from the gRPC code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybrid import constants
from hybrid.client import build_request
from hybrid.errors import HybridError, InvalidRequestError, ModelNotFoundError, UnavailableError
from hybrid.protocol import request_from_proto
from hybrid.router.dataplane import RouterDataPlane
from hybrid.v1 import inference_pb2 as pb

log = logging.getLogger("hybrid.router.openai")

# The time budget of a request without an x-hybrid-timeout-ms header.
DEFAULT_TIMEOUT_S = 120.0
PRIORITY_HEADER = "x-hybrid-priority"
AFFINITY_HEADER = "x-hybrid-affinity-key"
TIMEOUT_HEADER = "x-hybrid-timeout-ms"
_PRIORITIES = ("realtime", "interactive", "batch")

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
}
_ERROR_TYPE = {
    400: "invalid_request_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout_error",
}
_FINISH = {pb.STOP: "stop", pb.LENGTH: "length"}


# --- Request bodies: OpenAI's fields that mean something here; other fields are ignored. ---


class _ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class _ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[_ContentPart] | None = None


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=constants.MAX_NEW_TOKENS_LIMIT)
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = Field(default=None, ge=0, le=2**64 - 1)
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    priority: str | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[_ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=constants.MAX_NEW_TOKENS_LIMIT)


class CompletionRequest(_Sampling):
    prompt: str | list[Any]


# --- Errors ---


def _retry_after_ms(error: HybridError) -> int:
    hint = getattr(error, "retry_after_ms", None)
    return int(hint) if hint is not None else constants.MIN_RETRY_AFTER_MS


def _error_body(error: HybridError) -> tuple[int, dict[str, Any]]:
    status = _HTTP_STATUS.get(error.code, 500)
    body: dict[str, Any] = {
        "message": error.message,
        "type": _ERROR_TYPE.get(status, "server_error"),
        "param": None,
        "code": error.code.name.lower(),
    }
    if status == 429:
        body["retry_after_ms"] = _retry_after_ms(error)
    return status, {"error": body}


def _error_response(error: HybridError) -> JSONResponse:
    status, body = _error_body(error)
    headers = {}
    if status == 429:
        headers["retry-after"] = str(max(1, math.ceil(body["error"]["retry_after_ms"] / 1000)))
    return JSONResponse(body, status_code=status, headers=headers)


def _plain_error(status: int, message: str, code: str) -> JSONResponse:
    error = {"message": message, "type": _ERROR_TYPE.get(status, "server_error"), "param": None, "code": code}
    return JSONResponse({"error": error}, status_code=status)


def _describe_validation(errors: list[dict[str, Any]]) -> str:
    """FastAPI's validation errors as one sentence a person can act on."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        kind = error.get("type", "")
        if kind == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "it cannot be decoded")
            parts.append(f"the body is not valid JSON ({reason}): send a JSON object")
        elif kind == "missing":
            parts.append(f"{where or 'the body'} is required" + ("" if where else ": send a JSON object"))
        else:
            got = error.get("input")
            shown = f" (got {got!r})" if isinstance(got, str | int | float | bool) and len(repr(got)) <= 60 else ""
            parts.append(f"{where or 'the body'}: {error.get('msg', 'is not valid')}{shown}")
    return "; ".join(parts) or "the request body is not valid"


# --- Client disconnects ---


class _ClientGone(Exception):
    """The HTTP client closed its connection before the answer was ready."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(request: Request, work: Awaitable[Any]) -> Any:
    """Awaits ``work``; cancels it (and so the routed request) if the client goes away first."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise _ClientGone()


async def _next(chunks: AsyncGenerator[pb.GenerateResponse, None]) -> pb.GenerateResponse | None:
    return await anext(chunks, None)


class _EventStream(StreamingResponse):
    """Closes its event generator however the response ends, so a client that leaves cancels the request now."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


def _sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"


# --- Answers: the data plane's chunks as OpenAI objects ---


class _Answer:
    """One answer, chat or text completion, rendered whole or chunk by chunk in OpenAI's formats."""

    def __init__(self, front: OpenAIFront, chat: bool, request_id: str, model: str, include_usage: bool):
        self.front = front
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + request_id
        self.request_id = request_id
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.text: list[str] = []
        self.served_by: pb.ServedBy | None = None
        self.last: pb.GenerateResponse | None = None
        self._role_sent = False

    def observe(self, chunk: pb.GenerateResponse) -> None:
        """Notes where the answer is served and its last chunk; the text is the caller's."""
        if chunk.HasField("served_by") and self.served_by is None:
            self.served_by = chunk.served_by
            self.model = self.model or self.front.model_of(chunk.served_by.replica_id)
        if chunk.finish_reason:
            self.last = chunk

    def add(self, chunk: pb.GenerateResponse) -> None:
        self.observe(chunk)
        self.text.append(chunk.text)

    def headers(self) -> dict[str, str]:
        if self.served_by is None:
            return {}
        return {"x-hybrid-tier": _tier(self.served_by), "x-hybrid-replica": self.served_by.replica_id}

    def usage(self) -> dict[str, int]:
        usage = self.last.usage if self.last is not None else pb.Usage()
        total = usage.prompt_tokens + usage.completion_tokens
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": total,
        }

    def extras(self) -> dict[str, Any]:
        served = self.served_by or pb.ServedBy()
        timing = self.last.timing if self.last is not None else pb.Timing()
        return {
            "request_id": self.request_id,
            "served_by": {
                "tier": _tier(served),
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

    def _finish_reason(self) -> str:
        return _FINISH.get(self.last.finish_reason, "stop") if self.last is not None else "stop"

    def _head(self, obj: str) -> dict[str, Any]:
        head: dict[str, Any] = {"id": self.id, "object": obj, "created": self.created, "model": self.model}
        if self.chat:
            head["system_fingerprint"] = None
        return head

    def whole(self) -> dict[str, Any]:
        text = "".join(self.text)
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice |= {"logprobs": None, "finish_reason": self._finish_reason()}
        obj = "chat.completion" if self.chat else "text_completion"
        return self._head(obj) | {"choices": [choice], "usage": self.usage(), "hybrid": self.extras()}

    def _event(self, piece: str | dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        if self.chat:
            choice = {"index": 0, "delta": piece}
        else:
            choice = {"index": 0, "text": piece}
        choice |= {"logprobs": None, "finish_reason": finish_reason}
        event = self._head("chat.completion.chunk" if self.chat else "text_completion") | {"choices": [choice]}
        if self.include_usage:
            event["usage"] = None
        return event

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
                head = "chat.completion.chunk" if self.chat else "text_completion"
                events.append(self._head(head) | {"choices": [], "usage": self.usage()})
        return events


def _tier(served_by: pb.ServedBy) -> str:
    return pb.Tier.Name(served_by.tier).lower() if served_by.tier else ""


def _chat_messages(messages: list[_ChatMessage]) -> list[dict[str, str]]:
    converted = []
    for index, message in enumerate(messages):
        content = message.content
        if isinstance(content, list):
            texts = []
            for part_index, part in enumerate(content):
                if part.type != "text" or part.text is None:
                    raise InvalidRequestError(
                        f"messages[{index}].content[{part_index}] is of type {part.type!r}: only text parts are served"
                    )
                texts.append(part.text)
            content = "".join(texts)
        # Newer OpenAI clients call the system role "developer".
        role = "system" if message.role == "developer" else message.role
        converted.append({"role": role, "content": content or ""})
    return converted


# --- The server ---


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        # The router owns SIGINT and SIGTERM and stops this server itself, after its own order.
        yield


class OpenAIFront:
    """``start`` serves on ``host:port`` (0 picks a free port; ``address`` tells which), ``stop`` drains."""

    def __init__(
        self, dataplane: RouterDataPlane, host: str, port: int, drain_grace_s: float = constants.DRAIN_GRACE_S
    ):
        self.dataplane = dataplane
        self.host = host
        self.port = port
        self.drain_grace_s = drain_grace_s
        self.address = ""
        self.created = int(time.time())
        self.app = self._build_app()
        self._server: _Server | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family)
        port = sock.getsockname()[1]
        self.address = f"[{self.host}]:{port}" if family == socket.AF_INET6 else f"{self.host}:{port}"
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=port,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=self.drain_grace_s,
        )
        self._server = _Server(config)
        self._task = asyncio.ensure_future(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"the OpenAI front on {self.address} stopped before it started")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task

    def models(self) -> list[str]:
        self.dataplane.view.refresh()
        return sorted({r.record.model for r in self.dataplane.view.replicas() if r.record.model})

    def model_of(self, replica_id: str) -> str:
        for replica in self.dataplane.view.replicas():
            if replica.record.id == replica_id:
                return replica.record.model
        return ""

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Hybrid router: OpenAI-compatible API", docs_url=None, redoc_url=None)

        @app.exception_handler(RequestValidationError)
        async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
            return _plain_error(400, _describe_validation(list(error.errors())), "invalid_argument")

        @app.exception_handler(StarletteHTTPException)
        async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
            message = f"{request.method} {request.url.path}: {error.detail}"
            if error.status_code == 404:
                message += "; this server serves POST /v1/chat/completions, POST /v1/completions and GET /v1/models"
            return _plain_error(error.status_code, message, "not_found" if error.status_code == 404 else "http_error")

        @app.post("/v1/chat/completions")
        async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
            return await self._serve(request, body, chat=True)

        @app.post("/v1/completions")
        async def completions(body: CompletionRequest, request: Request) -> Response:
            return await self._serve(request, body, chat=False)

        @app.get("/v1/models")
        async def list_models() -> dict[str, Any]:
            return {"object": "list", "data": [self._model_card(name) for name in self.models()]}

        @app.get("/v1/models/{name:path}")
        async def get_model(name: str) -> Response:
            if name not in self.models():
                return _error_response(
                    ModelNotFoundError(f"model {name!r} is not served here: GET /v1/models lists those that are")
                )
            return JSONResponse(self._model_card(name))

        return app

    def _model_card(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "hybrid"}

    async def _serve(self, request: Request, body: ChatCompletionRequest | CompletionRequest, chat: bool) -> Response:
        try:
            return await self._answer(request, body, chat)
        except HybridError as error:
            return _error_response(error)
        except _ClientGone:
            return Response(status_code=499)
        except Exception:
            log.exception("the OpenAI front failed a request")
            return _error_response(HybridError("the router failed this request unexpectedly: see its log"))

    def _to_message(
        self, request: Request, body: ChatCompletionRequest | CompletionRequest, chat: bool
    ) -> pb.GenerateRequest:
        headers = request.headers
        priority = (headers.get(PRIORITY_HEADER) or body.priority or "interactive").strip().lower()
        if priority not in _PRIORITIES:
            raise InvalidRequestError(
                f"priority {priority!r} (header {PRIORITY_HEADER} or body field priority) is unknown: "
                f"use {', '.join(_PRIORITIES)}"
            )
        if body.n != 1:
            raise InvalidRequestError(f"n is {body.n}: one choice per request is served, set n to 1 or leave it out")
        if chat:
            prompt, messages = None, _chat_messages(body.messages)
            max_tokens = body.max_completion_tokens or body.max_tokens
        else:
            if not isinstance(body.prompt, str):
                raise InvalidRequestError(
                    "prompt is a list: one prompt per request is served, send it as one string "
                    "(and the others as separate requests)"
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
            priority=priority,
            model=body.model or "",
            request_id=uuid.uuid4().hex,
            affinity_key=headers.get(AFFINITY_HEADER) or body.user or "",
        )

    @staticmethod
    def _timeout_s(request: Request) -> float:
        raw = request.headers.get(TIMEOUT_HEADER)
        if raw is None:
            return DEFAULT_TIMEOUT_S
        try:
            milliseconds = float(raw)
        except ValueError:
            milliseconds = math.nan
        if not math.isfinite(milliseconds) or milliseconds <= 0:
            raise InvalidRequestError(f"header {TIMEOUT_HEADER} is {raw!r}: give a positive number of milliseconds")
        return milliseconds / 1000

    async def _answer(self, request: Request, body: ChatCompletionRequest | CompletionRequest, chat: bool) -> Response:
        deadline = time.monotonic() + self._timeout_s(request)
        message = self._to_message(request, body, chat)
        routed = request_from_proto(message, deadline)
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        answer = _Answer(self, chat, routed.request_id, body.model or "", include_usage)
        chunks = self.dataplane.generate(routed, message)
        if not body.stream:
            whole = await _unless_gone(request, self._collect(chunks, answer))
            return JSONResponse(whole, headers=answer.headers())
        # The first chunk is awaited before the response starts: a refusal is still an HTTP status.
        try:
            first = await _unless_gone(request, _next(chunks))
        except Exception:
            await chunks.aclose()
            raise
        if first is None:
            raise UnavailableError("the replica's stream ended before its first chunk; retry")
        answer.observe(first)
        headers = answer.headers() | {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return _EventStream(self._events(chunks, first, answer), media_type="text/event-stream", headers=headers)

    @staticmethod
    async def _collect(chunks: AsyncGenerator[pb.GenerateResponse, None], answer: _Answer) -> dict[str, Any]:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                answer.add(chunk)
        return answer.whole()

    @staticmethod
    async def _events(
        chunks: AsyncGenerator[pb.GenerateResponse, None], first: pb.GenerateResponse, answer: _Answer
    ) -> AsyncIterator[str]:
        try:
            chunk: pb.GenerateResponse | None = first
            while chunk is not None:
                for event in answer.events(chunk):
                    yield _sse(event)
                chunk = await _next(chunks)
        except HybridError as error:
            yield _sse(_error_body(error)[1])
        except Exception:
            log.exception("the OpenAI front failed a stream")
            yield _sse(_error_body(HybridError("the router failed this stream unexpectedly: see its log"))[1])
        finally:
            await chunks.aclose()
        yield _sse("[DONE]")
