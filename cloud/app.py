"""The cloud tier as a Ray Serve application: ``InferenceDeployment`` behind Serve's gRPC proxy.

Serve routes ``/hybrid.v1.Inference/Generate`` to the method named ``Generate`` of the app's
ingress deployment, and ``/grpc.health.v1.Health/Check`` to ``Check``: that is how Consul's
native gRPC check reaches a cluster whose proxy has no health service of its own (see
``cloud.defaults.CLOUD_GRPC_SERVICER_FUNCTIONS``).

With ``RAY_SERVE_ENABLE_DIRECT_INGRESS=1`` every replica also serves the same methods on a gRPC port of
its own node and registers itself there in discovery (``cloud.directory``); the proxy stays the door for
clients that do not use the router.

Build it with ``build_app(args)``: from Python (``hybrid cloud serve``), or from a Serve config
file (``import_path: cloud.app:build_app``) where the replica settings arrive as ``HYBRID_*``
environment variables and ``args`` may override them.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable

from grpc_health.v1 import health_pb2
from pydantic import ValidationError
from ray import serve
from ray.serve import Application

from cloud import defaults
from cloud.coalesce import coalesced
from cloud.config import CloudConfigError, DeploymentSettings, ReplicaSettings
from cloud.directory import ReplicaDirectory, ServeTarget, direct_ingress_enabled
from cloud.replica_port import ReplicaPort
from hybrid import constants
from hybrid.discovery import ReplicaRecord, registry_from_spec
from hybrid.engine import gc_pauses
from hybrid.errors import HybridError
from hybrid.serving.grpc_shell import parse_generate_request, request_of
from hybrid.telemetry import tracing
from hybrid.v1 import inference_pb2 as pb

log = logging.getLogger("hybrid.cloud")


def _fail(grpc_context, error: HybridError) -> HybridError:
    # Ray's proxy answers with the code and details set here; trailing metadata would be dropped
    # for a stream that has sent nothing yet, so OverloadedError keeps its retry hint in the text.
    if grpc_context is not None:
        grpc_context.set_code(error.code)
        grpc_context.set_details(error.message)
    return error


@serve.deployment(name=defaults.CLOUD_DEPLOYMENT_NAME)
class InferenceDeployment:
    async def __init__(self, settings: dict):
        from cloud.engine import build_engine

        self.settings = ReplicaSettings.model_validate(settings)
        # A Serve replica takes no flags: the OTEL_* environment Ray hands its actors turns tracing on.
        tracing.configure(tracing.TracingSettings(), "hybrid-cloud")
        context = serve.get_replica_context()
        unique = getattr(getattr(context, "replica_id", None), "unique_id", None) or context.replica_tag
        self.replica_id = f"cloud-{self.settings.tier}-{self.settings.region}-{unique}"
        # The process is this replica's alone, so the interval is ours to set.
        sys.setswitchinterval(self.settings.gil_switch_interval_ms / 1000)
        self.engine = build_engine(self.settings, self.replica_id)
        self.engine.start()
        # Serve sends nothing before the constructor returns: the pace is known from the first load report.
        await self.engine.measure_pace(full_batch=self.engine.model.device.type == "cuda")
        self.own_port = None
        if self.settings.replica_port is not None:
            self.own_port = ReplicaPort(
                self.engine,
                self.replica_id,
                self.settings.replica_port,
                stream_interval_ms=self.settings.stream_interval_ms,
            )
            log.info("replica %s serving on its own port %d (TLS %s)", self.replica_id, self.own_port.port,
                     "on" if self.own_port.tls else "off, loopback only")  # fmt: skip
        self.directory = self._follow_in_discovery(context.app_name, unique)
        # The watch on the garbage collector's pauses begins at the first health check (check_health).
        self._stop_watching_gc: Callable[[], None] | None = None
        self._frozen_when_watch_began = 0
        log.info("replica %s serving %s on %s", self.replica_id, self.engine.model_name, self.engine.model.device)

    def _follow_in_discovery(self, app_name: str, serve_replica: str) -> ReplicaDirectory | None:
        """On its own port (direct ingress), the replica is one record of discovery, kept while it serves."""
        registry = registry_from_spec(self.settings.discovery)
        if registry is None or not direct_ingress_enabled():
            return None
        settings, own = self.settings, self.own_port

        def record_for(target: ServeTarget) -> ReplicaRecord:
            return ReplicaRecord(
                id=self.replica_id,
                address="127.0.0.1" if own and own.loopback_only else settings.advertise_host or target.ip,
                port=target.port if own is None else own.port,
                tier=settings.tier,
                model=self.engine.model_name,
                precision=self.engine.served_by.precision,
                region=settings.region,
                zone=settings.zone,
                capacity=settings.max_batch_size,
                cost_per_hour=settings.cost_per_hour,
                application=app_name,
                serve_replica=target.serve_replica,
            )

        directory = ReplicaDirectory(registry, app_name, serve_replica, record_for, defaults.CLOUD_DIRECTORY_INTERVAL_S)
        return directory.start()

    async def Generate(self, raw: bytes, grpc_context=None):
        try:
            request = request_of(parse_generate_request(raw), grpc_context)
            # Every message a Serve replica streams costs a round of Ray's streaming protocol.
            interval_s = self.settings.stream_interval_ms / 1000
            async for chunk in coalesced(self.engine.generate(request), interval_s):
                yield chunk.to_proto()
        except HybridError as error:
            raise _fail(grpc_context, error) from None

    async def GetLoad(self, request: pb.GetLoadRequest, grpc_context=None) -> pb.LoadReport:
        served_by = self.engine.served_by
        return self.engine.load().to_proto(self.replica_id, self.engine.model_name, served_by.precision)

    async def Check(self, request: health_pb2.HealthCheckRequest, grpc_context=None):
        healthy = self._engine_alive() and not self.engine.load().draining
        status = health_pb2.HealthCheckResponse.SERVING if healthy else health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)

    def stats(self) -> dict:
        """The engine's own counters, for tests and operators (through a DeploymentHandle)."""
        engine = self.engine
        return {
            "replica_id": self.replica_id,
            "decode_steps": engine.decode_steps,
            "rows_decoded": engine.rows_decoded,
            "max_rows_in_step": engine.max_rows_in_step,
            "device": str(engine.model.device),
            "frozen_objects": gc.get_freeze_count(),
            "frozen_when_gc_watch_began": self._frozen_when_watch_began,
        }

    def reset_stats(self) -> None:
        self.engine.max_rows_in_step = 0

    def _engine_alive(self) -> bool:
        thread = self.engine._thread
        return thread is not None and thread.is_alive()

    def check_health(self) -> None:
        if self._stop_watching_gc is None:
            # Serve checks a new replica's health once it has collected and frozen the start's heap
            # (RAY_SERVE_FREEZE_GC_ON_STARTUP) and before it sends it traffic. From then on, a long collection is a
            # stall clients see; that start-up collection, watched, would be logged as one (~300 ms on a GPU host).
            self._frozen_when_watch_began = gc.get_freeze_count()
            self._stop_watching_gc = gc_pauses.watch_pauses()
        # Serve replaces a replica whose health check raises: a dead engine thread is a crash.
        if not self._engine_alive():
            raise RuntimeError(f"the engine thread of {self.replica_id} has stopped")

    def __del__(self) -> None:
        stop_watching_gc = getattr(self, "_stop_watching_gc", None)
        if stop_watching_gc is not None:
            stop_watching_gc()
        directory = getattr(self, "directory", None)
        if directory is not None:
            directory.stop()
        own_port = getattr(self, "own_port", None)
        if own_port is not None:
            own_port.stop(constants.DRAIN_GRACE_S)
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.stop(constants.DRAIN_GRACE_S)


def build_app(args: dict | None = None) -> Application:
    """The Serve application. ``args``: ReplicaSettings fields (override HYBRID_* variables), plus
    ``deployment``: DeploymentSettings fields (a Serve config file's deployment options win over these)."""
    args = dict(args or {})
    try:
        deployment = DeploymentSettings.model_validate(args.pop("deployment", {}))
        settings = ReplicaSettings.from_env_and_args(None, args)
    except ValidationError as error:
        raise CloudConfigError(f"the cloud tier's settings are wrong: {error}") from None
    return InferenceDeployment.options(
        autoscaling_config=deployment.autoscaling_config(),
        max_ongoing_requests=deployment.max_ongoing_requests,
        max_queued_requests=deployment.max_queued_requests,
        ray_actor_options=deployment.ray_actor_options(),
    ).bind(settings.model_dump())
