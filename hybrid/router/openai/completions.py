"""One completion request served: parsed, routed through the data plane, answered whole or streamed.

A client that goes away cancels its routed request at once, whether it was waiting for a whole answer
or reading a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hybrid.errors import HybridError, UnavailableError
from hybrid.router.openai.convert import routed_request
from hybrid.router.openai.errors import error_body, error_response
from hybrid.router.openai.rendering import Answer, sse
from hybrid.router.openai.schemas import ChatCompletionRequest, CompletionRequest, parse_request
from hybrid.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from hybrid.router.dataplane import RouterDataPlane
    from hybrid.security.keys import KeyEntry

log = logging.getLogger("hybrid.router.openai")

Chunks = AsyncGenerator[pb.GenerateResponse, None]


class ClientGone(Exception):
    """The HTTP client closed its connection before the answer was ready."""


async def serve(request: Request, chat: bool, dataplane: RouterDataPlane, model_of: Callable[[str], str]) -> Response:
    """Answers one POST to /v1/chat/completions (``chat``) or /v1/completions; never raises."""
    try:
        caller = dataplane.caller(request.headers.get("authorization"))
        body = parse_request(await request.body(), ChatCompletionRequest if chat else CompletionRequest)
        return await _answer(request, body, chat, dataplane, model_of, caller)
    except HybridError as error:
        return error_response(error)
    except ClientGone:
        return Response(status_code=499)
    except Exception:
        log.exception("the OpenAI front failed a request")
        return error_response(HybridError("the router failed this request unexpectedly: see its log"))


async def _answer(
    request: Request,
    body: ChatCompletionRequest | CompletionRequest,
    chat: bool,
    dataplane: RouterDataPlane,
    model_of: Callable[[str], str],
    caller: KeyEntry | None,
) -> Response:
    message, routed = routed_request(body, request.headers)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    answer = Answer(chat, routed.request_id, body.model or "", include_usage, model_of)
    chunks = dataplane.generate(routed, message, caller)
    if not body.stream:
        whole = await _unless_gone(request, _collect(chunks, answer))
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
    return EventStream(_events(chunks, first, answer), media_type="text/event-stream", headers=headers)


async def _collect(chunks: Chunks, answer: Answer) -> dict[str, Any]:
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            answer.add(chunk)
    return answer.whole()


async def _events(chunks: Chunks, first: pb.GenerateResponse, answer: Answer) -> AsyncIterator[str]:
    """The stream's events; an error after the first chunk becomes an error event, as OpenAI sends it."""
    try:
        chunk: pb.GenerateResponse | None = first
        while chunk is not None:
            for event in answer.events(chunk):
                yield sse(event)
            chunk = await _next(chunks)
    except HybridError as error:
        yield sse(error_body(error)[1])
    except Exception:
        log.exception("the OpenAI front failed a stream")
        yield sse(error_body(HybridError("the router failed this stream unexpectedly: see its log"))[1])
    finally:
        await chunks.aclose()
    yield sse("[DONE]")


async def _next(chunks: Chunks) -> pb.GenerateResponse | None:
    return await anext(chunks, None)


class EventStream(StreamingResponse):
    """Closes its event generator however the response ends, so a client that leaves cancels the request now."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


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
    raise ClientGone()
