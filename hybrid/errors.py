"""Errors that carry their gRPC status, so every transport reports them the same way."""

from __future__ import annotations

import grpc


class HybridError(Exception):
    """Base error: ``code`` is the gRPC status a transport answers with."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidRequestError(HybridError):
    """The request cannot be served as written; the message says what to change."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ModelNotFoundError(HybridError):
    code = grpc.StatusCode.NOT_FOUND


class PreconditionError(HybridError):
    """The request is valid but this replica cannot honour it (e.g. min_precision FULL on a quantized replica)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class OverloadedError(HybridError):
    """The queue is full. ``retry_after_ms`` tells the client when to try again."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_ms: int):
        super().__init__(f"{message}; retry after {retry_after_ms} ms")
        self.reason = message
        self.retry_after_ms = retry_after_ms

    def __reduce__(self):
        # Errors cross process boundaries (Ray Serve pickles them to its proxy): rebuild from both arguments.
        return (type(self), (self.reason, self.retry_after_ms))


class SlowReaderError(HybridError):
    """The client stopped reading its stream: the answer was stopped rather than buffered without bound."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(HybridError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnavailableError(HybridError):
    """The replica is draining or stopped."""

    code = grpc.StatusCode.UNAVAILABLE


class ArtifactError(HybridError):
    """An edge artifact is missing, incomplete or tampered with."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class QualityGateError(HybridError):
    """An export lost too much quality against the full model."""

    code = grpc.StatusCode.FAILED_PRECONDITION
