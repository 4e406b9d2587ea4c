"""A cloud replica's own gRPC port: hybrid.v1.Inference served straight from its engine, with the node's mTLS.

Serve's direct-ingress servers cannot speak TLS (Ray 2.60 opens them with ``add_insecure_port`` on every
interface, and ``gRPCOptions`` has no credentials), and every message they stream takes a round of Serve's
request path in the same interpreter as the engine. With ``replica_port`` set, the replica opens this port
itself, on an event loop of its own, with the TLS files the node gives every process (``HYBRID_TLS_*``);
without them it binds loopback only, as every Hybrid server does. Serve still owns the replica's life —
placement, autoscaling, health and replacement — and ``cloud.directory`` registers this port in discovery in
place of Serve's.
"""

from __future__ import annotations

import grpc

from cloud.coalesce import coalesced
from hybrid.engine.continuous import ContinuousBatchingEngine
from hybrid.security.tls import TlsSettings
from hybrid.serving.background import BackgroundLoop
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell, inference_handler, request_of
from hybrid.v1 import inference_pb2 as pb


class ReplicaPort:
    """The port, open from construction until ``stop``."""

    def __init__(
        self,
        engine: ContinuousBatchingEngine,
        replica_id: str,
        port: int,
        tls: TlsSettings | None = None,
        stream_interval_ms: float = 0.0,
    ):
        self.engine = engine
        self.replica_id = replica_id
        self.stream_interval_s = stream_interval_ms / 1000
        tls = tls or TlsSettings.resolve()
        # With a certificate (or plaintext asked for) the router on another node must reach it; else loopback.
        host = "0.0.0.0" if tls.cert is not None or tls.plaintext else "127.0.0.1"
        self._loop = BackgroundLoop("replica-port")
        try:
            self.shell = self._loop.call(self._open(host, port, tls))
        except BaseException:
            self._loop.close()
            raise
        self.port = self.shell.port
        self.tls = tls.enabled
        # Reached only from this machine: its record must say loopback, whatever the node's address.
        self.loopback_only = host == "127.0.0.1"

    async def _open(self, host: str, port: int, tls: TlsSettings) -> ServerShell:
        # A grpc.aio server belongs to the loop it is made on: made and started on this one.
        shell = ServerShell(host, port, [INFERENCE_SERVICE], tls=tls)
        shell.server.add_generic_rpc_handlers((inference_handler(self._generate, self._get_load),))
        await shell.start()
        return shell

    async def _generate(self, message: pb.GenerateRequest, context: grpc.aio.ServicerContext):
        # A HybridError raised here is answered by inference_handler with its own code (and retry hint).
        async for chunk in coalesced(self.engine.generate(request_of(message, context)), self.stream_interval_s):
            yield chunk.to_proto()

    async def _get_load(self, message: pb.GetLoadRequest, context: grpc.aio.ServicerContext) -> pb.LoadReport:
        engine = self.engine
        return engine.load().to_proto(self.replica_id, engine.model_name, engine.served_by.precision)

    def stop(self, grace_s: float) -> None:
        """Health says NOT_SERVING, answers in flight get ``grace_s`` to finish, then the port closes."""
        try:
            self._loop.call(self.shell.stop(grace_s))
        finally:
            self._loop.close()
