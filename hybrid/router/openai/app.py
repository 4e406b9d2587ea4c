"""The FastAPI routes of the OpenAI-compatible front, and ``OpenAIFront``, the uvicorn server that serves them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybrid import constants
from hybrid.errors import HybridError, ModelNotFoundError
from hybrid.router.openai import completions
from hybrid.router.openai.errors import error_response, plain_error
from hybrid.router.openai.limits import BoundedBody, HeadTimedH11, HTTPLimits
from hybrid.router.openai.openapi import openapi_document
from hybrid.router.status.http import add_status_routes
from hybrid.router.usage import usage_json
from hybrid.serving.ports import binding

if TYPE_CHECKING:
    from hybrid.router.dataplane import RouterDataPlane
    from hybrid.security.tls import RotatingSSLContext

_ROUTES = (
    "this server serves POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /v1/usage, "
    "GET /status and GET /status.json"
)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        # The router owns SIGINT and SIGTERM and stops this server itself, after its own order.
        yield


class OpenAIFront:
    """``start`` serves on ``host:port`` (0 picks a free port; ``address`` tells which), ``stop`` drains."""

    def __init__(
        self,
        dataplane: RouterDataPlane,
        host: str,
        port: int,
        drain_grace_s: float = constants.DRAIN_GRACE_S,
        limits: HTTPLimits | None = None,
        reuse_port: bool = False,
        workers: int = 1,
        ssl: RotatingSSLContext | None = None,
    ):
        """``reuse_port``: several router processes serve the same port, the kernel spreading connections;
        ``workers`` of them (the status page says whose calls it shows). ``ssl``: serve HTTPS with this
        certificate, taking rotated files on new connections."""
        self.ssl = ssl
        self.dataplane = dataplane
        self.reuse_port = reuse_port
        self.host = host
        self.port = port
        self.drain_grace_s = drain_grace_s
        self.limits = limits or HTTPLimits()
        self.address = ""
        self.created = int(time.time())
        self.workers = workers
        self.app = build_app(self)
        self._server: _Server | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with binding(self.host, self.port, "--http-port"):
            sock = socket.create_server((self.host, self.port), family=family, reuse_port=self.reuse_port)
        port = sock.getsockname()[1]
        self.address = f"[{self.host}]:{port}" if family == socket.AF_INET6 else f"{self.host}:{port}"
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=port,
            http=HeadTimedH11.bounded(self.limits.head_timeout_s),
            h11_max_incomplete_event_size=self.limits.max_head_bytes,
            timeout_keep_alive=self.limits.keep_alive_s,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=self.drain_grace_s,
            **({"ssl_certfile": str(self.ssl.cert), "ssl_keyfile": str(self.ssl.key)} if self.ssl else {}),
        )
        if self.ssl is not None:
            config.load()
            config.ssl = self.ssl.context  # uvicorn's own context would never read the files again
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

    def model_card(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "hybrid"}


def build_app(front: OpenAIFront) -> FastAPI:
    app = FastAPI(title="Hybrid router: OpenAI-compatible API", docs_url=None, redoc_url=None)
    app.add_middleware(BoundedBody, limits=front.limits)
    app.openapi = lambda: app.openapi_schema or _remember(app, openapi_document(app))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {error.detail}"
        if error.status_code == 404:
            message += f"; {_ROUTES}"
        return plain_error(error.status_code, message, "not_found" if error.status_code == 404 else "http_error")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await completions.serve(request, True, front.dataplane, front.model_of)

    @app.post("/v1/completions")
    async def text_completions(request: Request) -> Response:
        return await completions.serve(request, False, front.dataplane, front.model_of)

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        if (refusal := _refusal(request, front.dataplane.caller)) is not None:
            return refusal
        return JSONResponse({"object": "list", "data": [front.model_card(name) for name in front.models()]})

    @app.get("/v1/models/{name:path}")
    async def get_model(request: Request, name: str) -> Response:
        if (refusal := _refusal(request, front.dataplane.caller)) is not None:
            return refusal
        if name not in front.models():
            return error_response(
                ModelNotFoundError(f"model {name!r} is not served here: GET /v1/models lists those that are")
            )
        return JSONResponse(front.model_card(name))

    add_status_routes(app, front.dataplane, front.workers)

    @app.get("/v1/usage")
    async def usage(request: Request) -> Response:
        """Every key's usage of the whole router: requests, prompt and completion tokens, cost; an admin key's."""
        if (refusal := _refusal(request, front.dataplane.require_admin)) is not None:
            return refusal
        meter = front.dataplane.usage
        if meter is None:
            return plain_error(
                404, "usage is counted per API key and this router checks none: start it with --keys FILE", "not_found"
            )
        return JSONResponse(usage_json(meter.snapshot()))

    return app


def _remember(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    app.openapi_schema = document
    return document


def _refusal(request: Request, check: Callable[[str | None], object]) -> Response | None:
    """The error answer of the caller's key check (no valid key, not an admin key); None when it passes."""
    try:
        check(request.headers.get("authorization"))
    except HybridError as error:
        return error_response(error)
    return None
