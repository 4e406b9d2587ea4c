"""What travels beside a request on the wire: its time budget, the Serve application, the retry hint.

One home for every metadata key the project sends or reads, so that clients, replicas, the router
and the bench agree on them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

# Request metadata carrying the caller's time budget. The gRPC deadline itself reaches a plain
# server, but Ray Serve's proxy does not hand it to the replica, so Hybrid clients send it as well.
TIMEOUT_KEY = "hybrid-timeout-ms"
# Trailing metadata that carries the retry hint of RESOURCE_EXHAUSTED, for clients that read no
# typed details; the same hint travels as a google.rpc.RetryInfo detail.
RETRY_AFTER_KEY = "retry-after-ms"
# Ray Serve's proxy picks the Serve application by this key when a cluster runs several.
APPLICATION_KEY = "application"
# W3C Trace Context: the caller's trace, passed on to the next hop (hybrid.telemetry.tracing).
TRACE_KEYS = frozenset({"traceparent", "tracestate"})
# Where clients and commands read the caller's API key when none is given to them.
API_KEY_ENV = "HYBRID_API_KEY"
# The caller's API key, as "Bearer <key>" (hybrid.security.keys), the same header HTTP uses.
AUTHORIZATION_KEY = "authorization"

Metadata = tuple[tuple[str, str], ...]

# A server that went away is dialled again within a fraction of a second, not after gRPC's default back-off
# of 1 s growing to 120 s: a replica or router that restarts is used again as soon as it serves.
RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def call_metadata(
    application: str | None = None, timeout_s: float | None = None, api_key: str | None = None
) -> Metadata:
    """What a call carries besides its message: the Serve application, the remaining budget, the API key."""
    metadata = []
    if application:
        metadata.append((APPLICATION_KEY, application))
    if api_key:
        metadata.append((AUTHORIZATION_KEY, f"Bearer {api_key}"))
    if timeout_s is not None:
        metadata.append((TIMEOUT_KEY, str(max(1, int(timeout_s * 1000)))))
    return tuple(metadata)


def budget_s(metadata: Iterable[tuple[str, str]] | None) -> float | None:
    """The caller's budget in seconds as ``call_metadata`` wrote it; None when absent or unreadable."""
    for key, value in metadata or ():
        if key == TIMEOUT_KEY:
            try:
                return max(0.0, int(value) / 1000)
            except ValueError:
                return None
    return None


def authorization_of(context: grpc.aio.ServicerContext | grpc.ServicerContext) -> str | None:
    """The ``authorization`` value a call carries; None when it carries none."""
    for key, value in context.invocation_metadata() or ():
        if key == AUTHORIZATION_KEY:
            return value if isinstance(value, str) else None
    return None


def deadline_of(context: grpc.aio.ServicerContext | grpc.ServicerContext | None) -> float | None:
    """The request's absolute deadline on time.monotonic(): the gRPC deadline, else the budget in the metadata.

    Whichever is sooner wins when both are present: the deadline is propagated, never reset."""
    if context is None:
        return None
    remaining = context.time_remaining() if hasattr(context, "time_remaining") else None
    sent = budget_s(context.invocation_metadata())
    budgets = [b for b in (remaining, sent) if b is not None]
    return time.monotonic() + min(budgets) if budgets else None


def retry_status(code: grpc.StatusCode, message: str, retry_after_ms: int) -> grpc.Status:
    """A status whose details hold a google.rpc.RetryInfo: the hint as a typed field, not as text."""
    delay = duration_pb2.Duration(seconds=retry_after_ms // 1000, nanos=(retry_after_ms % 1000) * 1_000_000)
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    status.details.add().Pack(info)
    converted = rpc_status.to_status(status)
    # The plain key as well, for clients that do not decode typed details.
    converted_metadata = (*converted.trailing_metadata, (RETRY_AFTER_KEY, str(retry_after_ms)))
    return _Status(converted.code, converted.details, converted_metadata)


def retry_after_ms(trailing: Iterable[tuple[str, str | bytes]] | None) -> int | None:
    """The retry hint a failed call's trailing metadata carries, typed detail first; None when there is none."""
    pairs = list(trailing or ())
    for key, value in pairs:
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return int(info.retry_delay.seconds * 1000 + info.retry_delay.nanos // 1_000_000)
    for key, value in pairs:
        if key == RETRY_AFTER_KEY:
            try:
                return int(value)
            except ValueError:
                return None
    return None


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Metadata):
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata
