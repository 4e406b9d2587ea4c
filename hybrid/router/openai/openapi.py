"""The front's OpenAPI document: FastAPI's, completed with what the routes read and answer themselves.

The completion routes read their bodies themselves (``schemas``), so FastAPI sees none: the document adds
them, with the ranges and enums the router enforces. Every route's answers are listed as they really come:
the answer (JSON, or Server-Sent Events for a streamed completion) and each error status with OpenAI's
``{"error": {...}}`` body, 429 and 503 with ``Retry-After``. Keys are a bearer scheme, required where the
router was started with ``--keys``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from hybrid.router.openai.schemas import ChatCompletionRequest, CompletionRequest

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string", "description": "What is wrong and what to change."},
                "type": {"type": "string"},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "The field at fault."},
                "code": {"type": "string"},
                "retry_after_ms": {"type": "integer", "description": "When to try again (429, 503)."},
            },
        }
    },
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}}
_WHY = {
    400: "The request cannot be served as written; the message and param say what to change.",
    401: "No valid API key: send `authorization: Bearer <key>`.",
    403: "The key may not do this: a priority it lacks, or an admin call.",
    404: "No such model, or usage asked of a router that checks no keys.",
    408: "The body came too slowly.",
    413: "The body is larger than the router reads.",
    429: "A limit of the key reached, or no tier has room now.",
    503: "No replica could answer; retry.",
    504: "The deadline passed.",
}
_COMPLETION_ERRORS = (400, 401, 403, 404, 408, 413, 429, 503, 504)
_ROUTE_ERRORS = {
    ("/v1/chat/completions", "post"): _COMPLETION_ERRORS,
    ("/v1/completions", "post"): _COMPLETION_ERRORS,
    ("/v1/models", "get"): (401,),
    ("/v1/models/{name}", "get"): (401, 404),
    ("/v1/usage", "get"): (401, 403, 404),
}
_BODIES = {"/v1/chat/completions": ChatCompletionRequest, "/v1/completions": CompletionRequest}


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _WHY[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def openapi_document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = _ERROR
    components["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
    for path, model in _BODIES.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
        reference = {"$ref": f"#/components/schemas/{model.__name__}"}
        operation = document["paths"][path]["post"]
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": reference}}}
        operation["responses"]["200"]["content"]["text/event-stream"] = {
            # Each event's data: a chunk object, an error object, or [DONE].
            "schema": {"description": "Server-Sent Events, with `stream: true`: one chunk (or error) per event."}
        }
    for (path, method), statuses in _ROUTE_ERRORS.items():
        operation = document["paths"][path][method]
        operation["security"] = [{"apiKey": []}, {}]  # a router without --keys serves anyone
        responses = operation["responses"]
        responses.pop("422", None)  # FastAPI's own validation error: these routes never answer it
        responses.update({str(status): _error_response(status) for status in statuses})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document
