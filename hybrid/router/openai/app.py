"""The FastAPI routes of the OpenAI-compatible front, and ``OpenAIFront``, the uvicorn server that serves them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybrid import constants
from hybrid.errors import ModelNotFoundError
from hybrid.router.openai import completions
from hybrid.router.openai.errors import error_response, plain_error
from hybrid.router.openai.limits import BoundedBody, HeadTimedH11, HTTPLimits
from hybrid.router.status.http import add_status_routes

if TYPE_CHECKING:
    from hybrid.router.dataplane import RouterDataPlane
    from hybrid.security.tls import RotatingSSLContext

_ROUTES = (
    "this server serves POST /v1/chat/completions, POST /v1/completions, GET /v1/models, "
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
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [front.model_card(name) for name in front.models()]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> Response:
        if name not in front.models():
            return error_response(
                ModelNotFoundError(f"model {name!r} is not served here: GET /v1/models lists those that are")
            )
        return JSONResponse(front.model_card(name))

    add_status_routes(app, front.dataplane, front.workers)
    return app
