"""Typed clients for hybrid.v1.Inference, sync and asyncio.

    from hybrid.client import HybridClient
    with HybridClient("127.0.0.1:50051") as client:
        for chunk in client.stream(messages=[{"role": "user", "content": "Hi"}]):
            print(chunk.text, end="")
        answer = client.complete(prompt="The capital of France is", max_new_tokens=8)

The same client talks to the router, an edge agent or a cloud ingress. A server with mutual TLS needs a
client certificate of its CA:

    HybridClient("router.example:50051", tls=TlsSettings(cert="client.pem", key="client.key", ca="ca.pem"))

Without ``tls`` the client reads ``HYBRID_TLS_CERT``, ``HYBRID_TLS_KEY`` and ``HYBRID_TLS_CA``, and speaks
plaintext when none is set. A client that lives long follows a rotation of those files: the calls after it go
on a new connection with the new pair, while the calls already running finish on the old one.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import grpc

from hybrid import wire
from hybrid.protocol import Priority
from hybrid.security.tls import TlsSettings, open_channel
from hybrid.v1 import inference_pb2 as pb
from hybrid.v1 import inference_pb2_grpc as pb_grpc


class RequestFailed(Exception):
    """The server refused or failed the request. ``retry_after_ms`` is set with RESOURCE_EXHAUSTED."""

    def __init__(self, code: grpc.StatusCode, details: str, retry_after_ms: int | None = None):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.retry_after_ms = retry_after_ms


@dataclass
class Completion:
    """A whole answer, assembled from its chunks."""

    request_id: str = ""
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = ""
    served_by: pb.ServedBy | None = None
    usage: pb.Usage | None = None
    timing: pb.Timing | None = None

    def add(self, chunk: pb.GenerateResponse) -> None:
        self.request_id = chunk.request_id
        self.text += chunk.text
        self.token_ids.extend(chunk.token_ids)
        if chunk.HasField("served_by"):
            self.served_by = chunk.served_by
        if chunk.finish_reason:
            self.finish_reason = pb.FinishReason.Name(chunk.finish_reason)
            self.usage = chunk.usage
            self.timing = chunk.timing


def build_request(
    prompt: str | None = None,
    messages: list[dict[str, str]] | None = None,
    *,
    max_new_tokens: int = 0,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: list[str] | None = None,
    priority: str | int = "interactive",
    model: str = "",
    request_id: str = "",
    affinity_key: str = "",
    client_region: str = "",
    full_precision: bool = False,
) -> pb.GenerateRequest:
    request = pb.GenerateRequest(
        request_id=request_id,
        model=model,
        prompt=prompt or "",
        max_new_tokens=max_new_tokens,
        stop=stop or [],
        priority=int(Priority.parse(priority)) if isinstance(priority, str) else priority,
        affinity_key=affinity_key,
        client_region=client_region,
        min_precision=pb.FULL if full_precision else pb.ANY,
    )
    for message in messages or []:
        request.messages.add(role=message["role"], content=message["content"])
    if temperature is not None:
        request.temperature = temperature
    if top_p is not None:
        request.top_p = top_p
    if seed is not None:
        request.seed = seed
    return request


# gRPC's own retry policy gives up after five attempts, whatever the deadline; a server that restarts takes
# longer than five short backoffs. So the client resends a request the server could not start itself.
CHANNEL_OPTIONS = wire.RECONNECT_OPTIONS


class _Resend:
    """When to send a request again that the server could not start (UNAVAILABLE or CANCELLED before any
    message: it was restarting, draining, or not listening yet): after a backoff of 0.1 s doubling to 1 s, half of it jitter,
    for as long as the deadline leaves room for the wait. Only before the first message: an answer is never
    repeated or spliced from two attempts."""

    FIRST_S, LAST_S, MARGIN_S, ATTEMPTS_WITHOUT_DEADLINE = 0.1, 1.0, 0.05, 8

    def __init__(self, timeout_s: float | None):
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.backoff_s = self.FIRST_S
        self.attempts = 1

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def delay_s(self, error: grpc.RpcError, streamed: bool) -> float | None:
        """How long to wait before the next attempt; None when this failure is the answer."""
        # CANCELLED that this client did not ask for is a server that stopped as the request arrived.
        if streamed or error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            return None
        delay = self.backoff_s * (0.5 + random.random() / 2)
        self.backoff_s = min(self.LAST_S, self.backoff_s * 2)
        self.attempts += 1
        if self.deadline is None:
            return delay if self.attempts <= self.ATTEMPTS_WITHOUT_DEADLINE else None
        return delay if time.monotonic() + delay + self.MARGIN_S < self.deadline else None


# How Ray's proxy words the death of the replica actor serving a call.
_REPLICA_DIED = "actor died unexpectedly"


def _connection_hint(tls: TlsSettings, details: str) -> str:
    """What to check when no connection could be made for a reason other than nothing listening: most often one
    side speaks TLS and the other does not, or their certificates do not share a CA."""
    if "failed to connect" not in details or "Connection refused" in details:
        return ""
    if tls.enabled:
        return (
            f" (this client speaks TLS with {tls.cert or 'no certificate'} and trusts {tls.ca}: the server must serve "
            "TLS with a certificate of that CA for this address, and take this client's)"
        )
    return (
        " (this client speaks plaintext: if the server requires TLS, give --tls-cert, --tls-key and --tls-ca, "
        "or HYBRID_TLS_CERT, HYBRID_TLS_KEY and HYBRID_TLS_CA)"
    )


def _failure(error: grpc.RpcError, trailing=None, tls: TlsSettings | None = None) -> RequestFailed:
    if trailing is None and hasattr(error, "trailing_metadata"):
        trailing = error.trailing_metadata()
    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and tls is not None:
        details += _connection_hint(tls, details)
    if code == grpc.StatusCode.INTERNAL and _REPLICA_DIED in details:
        # Ray Serve's proxy reports a replica that died mid-request as INTERNAL; to a caller it is
        # what UNAVAILABLE means: this replica is gone, another attempt may succeed.
        code, details = grpc.StatusCode.UNAVAILABLE, f"the replica serving this request went away; retry ({details})"
    return RequestFailed(code, details, wire.retry_after_ms(trailing))


def _cut_short() -> RequestFailed:
    # A proxy in the path (Ray Serve's) may close a stream with OK when the replica behind it dies.
    return RequestFailed(
        grpc.StatusCode.UNAVAILABLE,
        "the stream ended without its final chunk: the replica serving it went away mid-answer; retry the request",
    )


def _tls(settings: TlsSettings | None) -> TlsSettings:
    return TlsSettings.resolve() if settings is None else settings


# How often a client looks at its TLS files for a rotation (a stat of each, before a call): a certificate is
# rotated days ahead of its expiry, and a stat a call would cost a generator of thousands a second.
ROTATION_CHECK_S = 1.0


class _Connection:
    """A client's channel and its generated ``InferenceStub``, reopened with the new pair when its TLS files were
    rotated; channels left for a new one keep the calls that run on them and close with the client."""

    def __init__(self, target: str, tls: TlsSettings, options: list, aio: bool):
        self._target, self._options, self._aio = target, options, aio
        self._credentials = tls.client_credentials() if tls.enabled else None
        self._checked_at = time.monotonic()
        self.retired: list = []
        self.channel = open_channel(target, self._credentials, options, aio)
        self._stub = pb_grpc.InferenceStub(self.channel)

    @property
    def stub(self) -> pb_grpc.InferenceStub:
        """The generated ``InferenceStub`` for the next call: on a new channel where the files changed since the last
        look."""
        now = time.monotonic()
        if self._credentials is not None and now - self._checked_at >= ROTATION_CHECK_S:
            self._checked_at = now
            if self._credentials.changed():
                self.retired.append(self.channel)
                self.channel = open_channel(self._target, self._credentials, self._options, self._aio)
                self._stub = pb_grpc.InferenceStub(self.channel)
        return self._stub

    def channels(self) -> list:
        return [*self.retired, self.channel]


class HybridClient:
    """``application`` names the Serve application when the target is a Ray cluster running several; ``tls`` the
    client certificate, key and CA of a server with mutual TLS (the environment's when None)."""

    def __init__(
        self,
        target: str,
        timeout_s: float | None = 120.0,
        application: str | None = None,
        tls: TlsSettings | None = None,
        api_key: str | None = None,
    ):
        """``api_key``: sent as ``authorization: Bearer`` to a router that checks keys; $HYBRID_API_KEY if None."""
        self.tls = _tls(tls)
        self._connection = _Connection(target, self.tls, list(CHANNEL_OPTIONS), aio=False)
        self.timeout_s = timeout_s
        self.application = application
        self.api_key = api_key or os.environ.get(wire.API_KEY_ENV)

    def stream(
        self, prompt: str | None = None, messages=None, timeout_s: float | None = None, **params
    ) -> Iterator[pb.GenerateResponse]:
        """Yields chunks as they arrive. Raises RequestFailed."""
        request = build_request(prompt, messages, **params)
        resend = _Resend(timeout_s or self.timeout_s)
        while True:
            streamed = finished = False
            remaining = resend.remaining_s()
            try:
                for chunk in self.stub.Generate(
                    request, timeout=remaining, metadata=wire.call_metadata(self.application, remaining, self.api_key)
                ):
                    streamed, finished = True, bool(chunk.finish_reason)
                    yield chunk
            except grpc.RpcError as error:
                delay = resend.delay_s(error, streamed)
                if delay is None:
                    raise _failure(error, tls=self.tls) from None
                time.sleep(delay)
                continue
            if not finished:
                raise _cut_short()
            return

    def complete(self, prompt: str | None = None, messages=None, **params) -> Completion:
        completion = Completion()
        for chunk in self.stream(prompt, messages, **params):
            completion.add(chunk)
        return completion

    def load(self) -> pb.LoadReport:
        try:
            return self.stub.GetLoad(
                pb.GetLoadRequest(),
                timeout=self.timeout_s,
                metadata=wire.call_metadata(self.application, api_key=self.api_key),
            )
        except grpc.RpcError as error:
            raise _failure(error, tls=self.tls) from None

    @property
    def channel(self) -> grpc.Channel:
        """The channel new calls go on."""
        return self._connection.channel

    @property
    def stub(self) -> pb_grpc.InferenceStub:
        """gRPC's generated ``InferenceStub`` on the channel new calls go on, for calls this client does not wrap."""
        return self._connection.stub

    def close(self) -> None:
        for channel in self._connection.channels():
            channel.close()

    def __enter__(self) -> HybridClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncHybridClient:
    def __init__(
        self,
        target: str,
        timeout_s: float | None = 120.0,
        application: str | None = None,
        channel_options: tuple[tuple[str, object], ...] = (),
        tls: TlsSettings | None = None,
        api_key: str | None = None,
    ):
        """``api_key``: sent as ``authorization: Bearer`` to a router that checks keys; $HYBRID_API_KEY if None."""
        self.tls = _tls(tls)
        self._connection = _Connection(target, self.tls, [*CHANNEL_OPTIONS, *channel_options], aio=True)
        self.timeout_s = timeout_s
        self.application = application
        self.api_key = api_key or os.environ.get(wire.API_KEY_ENV)

    async def stream(
        self, prompt: str | None = None, messages=None, timeout_s: float | None = None, **params
    ) -> AsyncIterator[pb.GenerateResponse]:
        request = build_request(prompt, messages, **params)
        resend = _Resend(timeout_s or self.timeout_s)
        while True:
            remaining = resend.remaining_s()
            metadata = wire.call_metadata(self.application, remaining, self.api_key)
            call = self.stub.Generate(request, timeout=remaining, metadata=metadata)
            streamed = finished = False
            try:
                async for chunk in call:
                    streamed, finished = True, bool(chunk.finish_reason)
                    yield chunk
            except grpc.RpcError as error:
                delay = resend.delay_s(error, streamed)
                if delay is None:
                    raise _failure(error, await call.trailing_metadata(), self.tls) from None
                await asyncio.sleep(delay)
                continue
            if not finished:
                raise _cut_short()
            return

    async def complete(self, prompt: str | None = None, messages=None, **params) -> Completion:
        completion = Completion()
        async for chunk in self.stream(prompt, messages, **params):
            completion.add(chunk)
        return completion

    async def load(self) -> pb.LoadReport:
        try:
            return await self.stub.GetLoad(
                pb.GetLoadRequest(),
                timeout=self.timeout_s,
                metadata=wire.call_metadata(self.application, api_key=self.api_key),
            )
        except grpc.RpcError as error:
            raise _failure(error, (), self.tls) from None

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel new calls go on."""
        return self._connection.channel

    @property
    def stub(self) -> pb_grpc.InferenceStub:
        """gRPC's generated ``InferenceStub`` on the channel new calls go on, for calls this client does not wrap."""
        return self._connection.stub

    async def close(self) -> None:
        for channel in self._connection.channels():
            await channel.close()

    async def __aenter__(self) -> AsyncHybridClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
