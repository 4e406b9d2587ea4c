"""Errors as OpenAI answers them: an HTTP status mapped from the gRPC code and an ``{"error": {...}}`` body.

A refusal to wait (429, and 503 when the error knows when to come back) also carries a ``Retry-After``
header. The hint is the error's ``retry_after_ms`` attribute, set where the refusal is decided; the
message is for people and is never read back for numbers.
"""

from __future__ import annotations

import math
from typing import Any

import grpc
from fastapi.responses import JSONResponse

from hybrid import constants
from hybrid.errors import HybridError, InvalidRequestError

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
}
_ERROR_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class InvalidFieldError(InvalidRequestError):
    """A request that cannot be served as written, naming the field (OpenAI's ``param``) to change."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def retry_after_ms(error: HybridError) -> int | None:
    """When the client may try again: the error's own hint; 429 without one gets the shortest wait."""
    hint = getattr(error, "retry_after_ms", None)
    if hint is not None:
        return max(0, int(hint))
    if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return constants.MIN_RETRY_AFTER_MS
    return None


def error_object(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    error = {"message": message, "type": _ERROR_TYPE.get(status, "server_error"), "param": param, "code": code}
    return {"error": error}


def error_body(error: HybridError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body that answer ``error``; also the payload of an error event in a stream."""
    status = HTTP_STATUS.get(error.code, 500)
    body = error_object(status, error.message, error.code.name.lower(), getattr(error, "param", None))
    hint = retry_after_ms(error)
    if hint is not None and status in (429, 503):
        body["error"]["retry_after_ms"] = hint
    return status, body


def error_response(error: HybridError) -> JSONResponse:
    status, body = error_body(error)
    headers = {}
    hint = body["error"].get("retry_after_ms")
    if hint is not None:
        headers["retry-after"] = str(max(1, math.ceil(hint / 1000)))
    if status == 401:
        headers["www-authenticate"] = 'Bearer realm="hybrid"'
    return JSONResponse(body, status_code=status, headers=headers)


def plain_error(
    status: int, message: str, code: str, *, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error the HTTP layer decides itself (unknown path, body too large or too slow), not a HybridError."""
    return JSONResponse(error_object(status, message, code, param), status_code=status, headers=headers)
