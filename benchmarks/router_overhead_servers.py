"""The processes ``router_overhead.py`` measures around the router: an instant replica (one final chunk at once,
no model, several processes on one port), a bare relay (the floor of any router on grpc.aio), an OTLP span sink,
and the certificates of its mutual-TLS stack.

Every server here binds 127.0.0.1: plaintext only on loopback, mutual TLS when given a certificate folder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path


async def serve_instant_replica(port: int, tls_dir: str | None = None) -> None:
    """One process of the instant replica; several of them share the port through SO_REUSEPORT. With
    ``tls_dir`` it serves mutual TLS with the server certificate there."""
    import grpc

    from hybrid.protocol import Chunk, FinishReason, ServedBy, Tier
    from hybrid.security.tls import RotatingServerCredentials
    from hybrid.serving.grpc_shell import inference_handler
    from hybrid.v1 import inference_pb2 as pb

    served_by = ServedBy(Tier.EDGE, "instant", "local", "none")

    async def generate(message, context):
        yield Chunk(message.request_id, "ok", [1], served_by, FinishReason.STOP, 1, 1).to_proto()

    async def get_load(message, context):
        return pb.LoadReport(replica_id="instant", capacity=1024)

    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    server.add_generic_rpc_handlers((inference_handler(generate, get_load),))
    if tls_dir:
        bound = server.add_secure_port(
            f"127.0.0.1:{port}", RotatingServerCredentials(leaf_tls(Path(tls_dir), "server")).credentials
        )
    else:
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if bound != port:
        raise OSError(f"could not bind 127.0.0.1:{port}")
    await server.start()
    print(f"instant replica ready on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


async def serve_bare_relay(port: int, target: str) -> None:
    """A grpc.aio server that passes each Generate call on to ``target`` and its answer back, as bytes, with no
    policy, books or checks: the least any router written on grpc.aio spends per request, measured beside it."""
    import grpc

    from hybrid.serving.grpc_shell import INFERENCE_SERVICE

    if not target.startswith("127.0.0.1:"):
        raise ValueError(f"the bare relay speaks plaintext, so it reaches loopback only: {target} is not 127.0.0.1")
    channel = grpc.aio.insecure_channel(target)
    relay = channel.unary_stream(f"/{INFERENCE_SERVICE}/Generate")

    async def generate(raw: bytes, context):
        async for chunk in relay(raw, timeout=context.time_remaining()):
            yield chunk

    server = grpc.aio.server()
    handler = grpc.unary_stream_rpc_method_handler(generate)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(INFERENCE_SERVICE, {"Generate": handler}),))
    if server.add_insecure_port(f"127.0.0.1:{port}") != port:
        raise OSError(f"could not bind 127.0.0.1:{port}")
    await server.start()
    print(f"bare relay ready on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


async def serve_span_sink(port: int) -> None:
    """An OTLP/gRPC trace collector that accepts every export and keeps nothing: the router's exporter then
    does all its work (batching, encoding, sending) without a real collector in the measurement."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

    class Sink(otlp_grpc.TraceServiceServicer):
        async def Export(self, request, context):
            return otlp.ExportTraceServiceResponse()

    server = grpc.aio.server()
    otlp_grpc.add_TraceServiceServicer_to_server(Sink(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("span sink ready on", port, flush=True)
    await server.wait_for_termination()


def leaf_tls(folder: Path, name: str):
    from hybrid.security.tls import TlsSettings

    return TlsSettings(cert=folder / f"{name}.pem", key=folder / f"{name}.key", ca=folder / "ca.pem")


def client_tls(folder: Path | None):
    """The client certificate of ``folder`` (None: plaintext), which the load generator's processes present
    when it is in their environment (``hybrid.security.tls.tls_environment``)."""
    return None if folder is None else leaf_tls(folder, "client")


def register_instant_replica(port: int, discovery: str) -> None:
    from hybrid.discovery import ReplicaRecord, registry_from_spec

    record = ReplicaRecord(
        id="instant",
        address="127.0.0.1",
        port=port,
        tier="edge",
        model="instant",
        precision="none",
        region="local",
        capacity=1024,
    )
    registry_from_spec(discovery).register(record)
