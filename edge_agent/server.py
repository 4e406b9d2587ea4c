"""The edge agent: the artifact on ONNX Runtime behind hybrid.v1.Inference."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from prometheus_client import start_http_server

from edge_agent.config import EdgeAgentConfig
from edge_agent.engine import GenerationEngine
from edge_agent.runtime import OnnxCausalLM
from hybrid._private.background import BackgroundLoop, serve_until_signalled
from hybrid._private.grpc_server import INFERENCE_SERVICE, ServerShell, inference_handler
from hybrid.discovery import ReplicaRecord, registry_from_spec
from hybrid.errors import HybridError
from hybrid.metrics import ReplicaMetrics
from hybrid.models.artifact import MODEL_FILE, verify_artifact
from hybrid.models.registry import end_token_ids, load_tokenizer
from hybrid.protocol import ServedBy, Tier, request_from_proto
from hybrid.v1 import inference_pb2 as pb

log = logging.getLogger("hybrid.edge")


class InferenceServicer:
    """Thin: wire message in, data plane, wire chunks out."""

    def __init__(
        self, engine: GenerationEngine, replica_id: str, manifest_model: str, precision: str, metrics: ReplicaMetrics
    ):
        self.engine = engine
        self.metrics = metrics
        self.replica_id = replica_id
        self.model = manifest_model
        self.precision = precision

    async def Generate(self, message: pb.GenerateRequest, context: grpc.aio.ServicerContext):
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        try:
            request = request_from_proto(message, deadline)
            async for chunk in self.engine.generate(request):
                yield chunk.to_proto()
        except HybridError as error:
            self.metrics.rejected.labels(error.code.name).inc()
            raise

    async def GetLoad(self, message: pb.GetLoadRequest, context: grpc.aio.ServicerContext) -> pb.LoadReport:
        return self.engine.load().to_proto(self.replica_id, self.model, self.precision)


class EdgeAgent:
    """One edge agent. ``start`` loads the model and serves; ``stop`` drains, deregisters and stops."""

    def __init__(self, config: EdgeAgentConfig):
        self.config = config
        self.manifest = verify_artifact(config.artifact)
        self.metrics = ReplicaMetrics()
        self.shell = ServerShell(config.host, config.port, [INFERENCE_SERVICE])
        self.replica_id = config.resolved_replica_id(self.shell.port)
        self.address = self.shell.address
        tokenizer = load_tokenizer(config.artifact)
        runtime = OnnxCausalLM(config.artifact / MODEL_FILE, num_threads=config.num_threads or None)
        self.engine = GenerationEngine(
            runtime=runtime,
            tokenizer=tokenizer,
            served_by=ServedBy(Tier.EDGE, self.replica_id, config.region, self.manifest.precision),
            model_name=self.manifest.model,
            max_context_tokens=min(config.max_context_tokens, self.manifest.context_window),
            full_precision=self.manifest.full_precision,
            metrics=self.metrics,
            end_ids=end_token_ids(config.artifact, tokenizer),
            max_batch_size=config.max_batch_size,
            max_wait_ms=config.max_wait_ms,
            max_queued_requests=config.max_queued_requests,
        )
        self.batcher = self.engine.batcher
        self.metrics.capacity.set(config.max_batch_size)
        servicer = InferenceServicer(
            self.engine, self.replica_id, self.manifest.model, self.manifest.precision, self.metrics
        )
        self.shell.server.add_generic_rpc_handlers((inference_handler(servicer.Generate, servicer.GetLoad),))
        self.registry = registry_from_spec(config.discovery)
        self._metrics_server = None
        self.metrics_address: str | None = None

    def record(self) -> ReplicaRecord:
        host = self.config.advertise_host or self.config.host
        return ReplicaRecord(
            id=self.replica_id,
            address=host,
            port=self.shell.port,
            tier="edge",
            model=self.manifest.model,
            precision=self.manifest.precision,
            region=self.config.region,
            zone=self.config.zone,
            capacity=self.config.max_batch_size,
            cost_per_hour=self.config.cost_per_hour,
        )

    async def start(self) -> None:
        self.engine.start()
        await self.shell.start()
        if self.config.metrics_port is not None:
            self._metrics_server, _ = start_http_server(
                self.config.metrics_port, self.config.host, registry=self.metrics.registry
            )
            self.metrics_address = f"{self.config.host}:{self._metrics_server.server_port}"
        self._register()
        log.info(
            "edge agent %s ready on %s (model %s, %s, region %s)",
            self.replica_id,
            self.address,
            self.manifest.model,
            self.manifest.precision,
            self.config.region,
        )

    def _register(self) -> None:
        if self.registry is None:
            return
        try:
            self.registry.register(self.record())
        except Exception as error:  # discovery down: serving matters more than being listed
            log.warning("could not register %s in discovery (%s); serving anyway", self.replica_id, error)

    async def stop(self) -> None:
        if self.registry is not None:
            try:
                self.registry.deregister(self.replica_id)
            except Exception as error:
                log.warning("could not deregister %s from discovery (%s)", self.replica_id, error)
        grace = self.config.drain_grace_s
        await self.shell.set_not_serving()
        await asyncio.to_thread(self.engine.stop, grace)
        await self.shell.stop(grace)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        log.info("edge agent %s stopped", self.replica_id)


async def serve_forever(config: EdgeAgentConfig) -> None:
    """Runs an edge agent until SIGINT or SIGTERM, then drains and exits."""
    await serve_until_signalled(EdgeAgent(config))


class BackgroundEdgeAgent(BackgroundLoop):
    """An edge agent on its own event loop thread: for tests, benchmarks and `hybrid up`."""

    def __init__(self, config: EdgeAgentConfig):
        super().__init__("edge-agent-loop")
        self.agent: EdgeAgent = self.start_server(EdgeAgent, config)
        self.address = self.agent.address

    def stop(self) -> None:
        self.call(self.agent.stop())
        self.close()
