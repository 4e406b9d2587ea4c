"""Plumbing every gRPC server shares: method handlers, health, reflection, error mapping, drain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hybrid import constants, wire
from hybrid.errors import HybridError, InvalidRequestError, OverloadedError
from hybrid.protocol import GenerationRequest, request_from_proto
from hybrid.security.tls import RotatingServerCredentials, TlsSettings
from hybrid.serving.ports import PortTakenError
from hybrid.telemetry import tracing
from hybrid.v1 import inference_pb2 as pb

log = logging.getLogger(__name__)

INFERENCE_SERVICE = "hybrid.v1.Inference"

GenerateHandler = Callable[[pb.GenerateRequest, grpc.aio.ServicerContext], AsyncIterator[pb.GenerateResponse]]


async def abort_with(context: grpc.aio.ServicerContext, error: HybridError) -> None:
    if isinstance(error, OverloadedError):
        await context.abort_with_status(wire.retry_status(error.code, error.message, error.retry_after_ms))
    await context.abort(error.code, error.message)


def parse_generate_request(raw: bytes) -> pb.GenerateRequest:
    try:
        return pb.GenerateRequest.FromString(raw)
    except DecodeError as exc:
        raise InvalidRequestError(
            f"the request body is not a valid hybrid.v1.GenerateRequest ({exc}); use the generated stubs"
        ) from exc


def request_of(message: pb.GenerateRequest, context) -> GenerationRequest:
    """The validated request a gRPC call carries, with its deadline and, while this process traces, the caller's
    trace headers. ``context`` is grpc's servicer context, or Ray Serve's gRPC context; None for neither."""
    request = request_from_proto(message, wire.deadline_of(context))
    if context is not None and tracing.tracer() is not None:
        request.trace_carrier = tracing.carrier_of(context.invocation_metadata())
    return request


def inference_handler(
    generate: GenerateHandler,
    get_load: Callable[[pb.GetLoadRequest, grpc.aio.ServicerContext], Awaitable[pb.LoadReport]],
) -> grpc.GenericRpcHandler:
    """hybrid.v1.Inference with Generate taking raw bytes, so malformed input is INVALID_ARGUMENT, not INTERNAL."""

    async def generate_raw(raw: bytes, context: grpc.aio.ServicerContext):
        try:
            request = parse_generate_request(raw)
            async for chunk in generate(request, context):
                yield chunk
        except HybridError as error:
            await abort_with(context, error)

    return grpc.method_handlers_generic_handler(
        INFERENCE_SERVICE,
        {
            "Generate": grpc.unary_stream_rpc_method_handler(
                generate_raw, request_deserializer=None, response_serializer=pb.GenerateResponse.SerializeToString
            ),
            "GetLoad": grpc.unary_unary_rpc_method_handler(
                get_load,
                request_deserializer=pb.GetLoadRequest.FromString,
                response_serializer=pb.LoadReport.SerializeToString,
            ),
        },
    )


class ServerShell:
    """A grpc.aio server with health and reflection, bound to one address, that drains on stop.

    With ``tls`` naming a certificate it serves mutual TLS only (``hybrid.security.tls``); without, it binds
    loopback only unless the settings ask for plaintext."""

    def __init__(
        self,
        host: str,
        port: int,
        service_names: list[str],
        reuse_port: bool = False,
        tls: TlsSettings | None = None,
    ):
        """``reuse_port`` lets several processes serve the same port, the kernel spreading connections over them;
        off, a second server on a port in use fails to bind rather than silently taking part of its traffic."""
        tls = tls or TlsSettings()
        tls.check_bind(host)
        self.tls = tls
        self.credentials: RotatingServerCredentials | None = tls.server_credentials() if tls.enabled else None
        self.server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 1 if reuse_port else 0),
                # A request larger than any valid one is refused by gRPC as it arrives, before it is read into
                # memory: RESOURCE_EXHAUSTED naming both sizes.
                ("grpc.max_receive_message_length", constants.MAX_REQUEST_BYTES),
            ]
        )
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = service_names
        reflection.enable_server_reflection([*service_names, reflection.SERVICE_NAME, health.SERVICE_NAME], self.server)
        try:
            if self.credentials is None:
                self.port = self.server.add_insecure_port(f"{host}:{port}")
            else:
                self.port = self.server.add_secure_port(f"{host}:{port}", self.credentials.credentials)
        except RuntimeError:  # what grpc raises where older versions returned 0
            self.port = 0
        if self.port == 0:
            raise PortTakenError(f"could not bind {host}:{port}: another server uses it; choose another --port")
        self.address = f"{host}:{self.port}"

    async def start(self) -> None:
        await self.server.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)

    async def set_not_serving(self) -> None:
        """Tells health checkers to stop sending work, while streams in flight go on."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace_s: float) -> None:
        await self.set_not_serving()
        await self.server.stop(grace_s)

    async def _set_health(self, status) -> None:
        for name in ["", *self.service_names]:
            result = self.health.set(name, status)
            if asyncio.iscoroutine(result):
                await result
