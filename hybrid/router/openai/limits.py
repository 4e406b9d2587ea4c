"""Bounds on what one HTTP client may cost the front: head and body size, and the time to send them.

uvicorn bounds an idle kept-alive connection (``timeout_keep_alive``) and, with h11, how much of an
unfinished request head it buffers (``h11_max_incomplete_event_size``); it bounds neither the time a
client takes to send its head nor its body. So the h11 protocol here closes a connection whose head
is not in within ``head_timeout_s``, and ``BoundedBody`` reads every body whole before the app sees
it: too large is 413, too slow (a Content-Length larger than what is sent) is 408, both closing the
connection.
"""

from __future__ import annotations

import asyncio
import contextlib

from pydantic import BaseModel, Field
from uvicorn.protocols.http.h11_impl import H11Protocol

from hybrid.router.openai.errors import plain_error


class HTTPLimits(BaseModel):
    max_body_bytes: int = Field(default=1 << 20, gt=0, description="Largest request body; larger ones get 413.")
    body_timeout_s: float = Field(
        default=10.0, gt=0, description="Time to send a whole body once the head is in; slower ones get 408."
    )
    head_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Time from connecting, or from the last answer, to a complete request head; then it is closed.",
    )
    keep_alive_s: float = Field(default=5.0, gt=0, description="An idle kept-alive connection is closed after it.")
    max_head_bytes: int = Field(
        default=32 * 1024, ge=4096, description="Most of an unfinished request head (line and headers) buffered."
    )


class HeadTimedH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request head is not in within ``head_timeout_s``."""

    head_timeout_s: float = HTTPLimits().head_timeout_s
    _head_timer: asyncio.TimerHandle | None = None

    @classmethod
    def bounded(cls, head_timeout_s: float) -> type[HeadTimedH11]:
        return type(cls.__name__, (cls,), {"head_timeout_s": head_timeout_s})

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        # A request in progress (its body, or its answer) is not this timer's business.
        awaiting_head = self.cycle is None or self.cycle.response_complete
        if awaiting_head and not self.transport.is_closing():
            self.transport.close()


# How much of a too-large body is read and dropped, in bodies' worth, before the connection is closed.
_DISCARD_FACTOR = 4


class _BodyTooLarge(Exception):
    pass


class _ClientLeft(Exception):
    pass


class BoundedBody:
    """ASGI middleware: reads each request body whole, within ``HTTPLimits``, and hands it on to the app."""

    def __init__(self, app, limits: HTTPLimits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_body_bytes
        declared = _content_length(scope)
        try:
            if declared is not None and declared > limit:
                raise _BodyTooLarge(f"the body is {declared} bytes; the limit is {limit}")
            body = await asyncio.wait_for(self._read(receive), self.limits.body_timeout_s)
        except _BodyTooLarge as too_large:
            await self._discard_rest(receive)
            message = f"{too_large}: send a shorter prompt or conversation"
            await _refuse(413, message, "request_too_large", scope, receive, send)
            return
        except TimeoutError:
            message = (
                f"the body did not arrive within {self.limits.body_timeout_s:g} s: "
                "send it whole, exactly as long as its Content-Length says"
            )
            await _refuse(408, message, "request_timeout", scope, receive, send)
            return
        except _ClientLeft:
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientLeft()
            part = message.get("body", b"")
            size += len(part)
            if size > self.limits.max_body_bytes:
                raise _BodyTooLarge(f"the body is over the limit of {self.limits.max_body_bytes} bytes")
            parts.append(part)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _discard_rest(self, receive) -> None:
        """Reads on what a refused client is still sending, within bounds, so that it gets the refusal:
        a connection closed with unread data resets, and the client sees the reset instead of the answer."""

        async def discard(budget: int) -> None:
            while budget > 0:
                message = await receive()
                budget -= len(message.get("body", b""))
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(discard(_DISCARD_FACTOR * self.limits.max_body_bytes), self.limits.body_timeout_s)


def _content_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive):
    """The app's ``receive``: the body, read already, then the client's own messages (its disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed


async def _refuse(status: int, message: str, code: str, scope, receive, send) -> None:
    # The rest of the body is never read, so the connection cannot carry another request.
    response = plain_error(status, message, code, headers={"connection": "close"})
    await response(scope, receive, send)
