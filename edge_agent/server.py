"""The edge agent: the artifact on ONNX Runtime behind hybrid.v1.Inference.

The engine behind the servicer can be replaced while the agent serves (``load``, ``switch_to``,
``retire``): new requests go to the new engine at once, streams already running on the old one
finish there. Discovery is kept in step in the background: the agent checks every
``reregister_interval_s`` that it is still listed and registers again when it is not, so an outage
of Consul (or a Consul that dropped it meanwhile) heals by itself while serving never stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from edge_agent.artifacts.lean_graph import outdated
from edge_agent.artifacts.manifest import MODEL_FILE, Manifest, manifest_sha256, verify_artifact
from edge_agent.artifacts.quality import check_tokenizer
from edge_agent.config import EdgeAgentConfig, EdgeAgentSettings
from edge_agent.engine import GenerationEngine
from edge_agent.lean_engine import LeanGenerationEngine
from edge_agent.lean_runtime import LeanDecoder
from edge_agent.runtime import OnnxCausalLM
from hybrid.discovery import ReplicaRecord, registry_from_spec
from hybrid.engine import gc_pauses
from hybrid.engine.continuous import ContinuousBatchingEngine
from hybrid.engine.metrics import ReplicaMetrics
from hybrid.errors import ArtifactError, HybridError
from hybrid.models.registry import end_token_ids, load_tokenizer
from hybrid.protocol import ServedBy, Tier
from hybrid.serving.background import BackgroundLoop, serve_until_signalled
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell, inference_handler, request_of
from hybrid.serving.ports import start_metrics_server
from hybrid.v1 import inference_pb2 as pb

log = logging.getLogger("hybrid.edge")


@dataclass
class LoadedArtifact:
    """A verified artifact and the engine built on it."""

    folder: Path
    manifest: Manifest
    sha256: str
    engine: ContinuousBatchingEngine

    def describe(self) -> str:
        return f"{self.sha256[:12]} ({self.manifest.model}, {self.manifest.precision})"


def load_artifact(
    folder: Path,
    settings: EdgeAgentSettings,
    replica_id: str,
    metrics: ReplicaMetrics | None = None,
    expected_sha256: str | None = None,
) -> LoadedArtifact:
    """Verifies ``folder`` (against the pinned manifest hash when given) and builds its engine, not started."""
    folder = Path(folder).resolve()  # a `current` symlink may be flipped later; keep what was loaded
    manifest = verify_artifact(folder, expected_sha256, settings.trusted_key())
    stale = outdated(manifest.recipe, folder / MODEL_FILE)
    if stale:
        raise ArtifactError(f"{folder}: {stale}")
    tokenizer = load_tokenizer(folder)
    check_tokenizer(tokenizer, manifest.quality)
    max_context = min(settings.max_context_tokens, manifest.context_window)
    threads = settings.num_threads or None
    if manifest.recipe.get("graph") == "lean":
        runtime = LeanDecoder(
            folder / MODEL_FILE,
            num_threads=threads,
            max_slots=settings.max_batch_size,
            max_context=max_context,
            device=settings.device,
        )
        engine_type = LeanGenerationEngine
    else:
        runtime = OnnxCausalLM(folder / MODEL_FILE, num_threads=threads, device=settings.device)
        engine_type = GenerationEngine
    log.info("artifact %s runs on %s (%s)", folder.name, runtime.device, ", ".join(runtime.providers))
    engine = engine_type(
        runtime=runtime,
        tokenizer=tokenizer,
        served_by=ServedBy(Tier.EDGE, replica_id, settings.region, manifest.precision),
        model_name=manifest.model,
        max_context_tokens=max_context,
        full_precision=manifest.full_precision,
        metrics=metrics,
        end_ids=end_token_ids(folder, tokenizer),
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queued_requests=settings.max_queued_requests,
    )
    return LoadedArtifact(folder, manifest, manifest_sha256(folder), engine)


def drain(engine: ContinuousBatchingEngine, grace_s: float) -> bool:
    """Waits (blocking) until no answer is open on ``engine``; False when grace_s ran out first."""
    deadline = time.monotonic() + grace_s
    while engine.open_requests and time.monotonic() < deadline:
        time.sleep(0.02)
    return not engine.open_requests


@dataclass
class DiscoveryStatus:
    """How registration is going, for logs and `hybrid-edge status`; times are wall-clock seconds."""

    spec: str
    registered: bool = False
    last_ok_at: float | None = None
    failing_since: float | None = None
    last_error: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class InferenceServicer:
    """Thin: wire message in, data plane, wire chunks out. Asks the agent for its engine on every call."""

    def __init__(self, agent: EdgeAgent):
        self.agent = agent

    async def Generate(self, message: pb.GenerateRequest, context: grpc.aio.ServicerContext):
        try:
            request = request_of(message, context)
            # Bound once: a switch during this answer leaves it on the engine that started it.
            async for chunk in self.agent.engine.generate(request):
                yield chunk.to_proto()
        except HybridError as error:
            self.agent.metrics.rejected.labels(error.code.name).inc()
            raise

    async def GetLoad(self, message: pb.GetLoadRequest, context: grpc.aio.ServicerContext) -> pb.LoadReport:
        serving = self.agent.serving
        return serving.engine.load().to_proto(self.agent.replica_id, serving.manifest.model, serving.manifest.precision)


class EdgeAgent:
    """One edge agent. ``start`` loads the model and serves; ``stop`` drains, deregisters and stops."""

    def __init__(self, config: EdgeAgentConfig, loaded: LoadedArtifact | None = None):
        """``loaded``: the artifact loaded already (`hybrid-edge run` picks the last good one); else config.artifact."""
        self.config = config
        self.metrics = ReplicaMetrics()
        self.shell = ServerShell(config.host, config.port, [INFERENCE_SERVICE], tls=config.tls)
        self.replica_id = config.resolved_replica_id(self.shell.port)
        self.address = self.shell.address
        if loaded is None:
            loaded = load_artifact(config.artifact, config, self.replica_id, self.metrics)
        else:
            # Loaded before the port was bound: it gets this agent's metrics and its final replica id.
            loaded.engine.metrics = self.metrics
            loaded.engine.served_by = dataclasses.replace(loaded.engine.served_by, replica_id=self.replica_id)
        self.serving = loaded
        self.metrics.capacity.set(config.max_batch_size)
        servicer = InferenceServicer(self)
        self.shell.server.add_generic_rpc_handlers((inference_handler(servicer.Generate, servicer.GetLoad),))
        self.registry = registry_from_spec(config.discovery, tls=self.shell.credentials is not None)
        self.discovery = DiscoveryStatus(config.discovery)
        self._registration_lock = asyncio.Lock()
        self._registered: ReplicaRecord | None = None
        self._registration_task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._metrics_server = None
        self.metrics_address: str | None = None
        self._stop_gc_watch = lambda: None

    @property
    def engine(self) -> ContinuousBatchingEngine:
        return self.serving.engine

    @property
    def batcher(self):
        return self.serving.engine.batcher

    @property
    def manifest(self) -> Manifest:
        return self.serving.manifest

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

    async def start(self, announce: bool = True) -> None:
        """Serves; ``announce=False`` leaves the "ready on" line to a caller with more to set up first. Where a step
        fails (a port taken), what had started is stopped before the error goes on."""
        try:
            await self._start()
        except BaseException:
            await self._stop_serving(grace=0)
            raise
        if announce:
            self.announce()

    async def _start(self) -> None:
        self.engine.start()
        await self.engine.measure_pace()
        self._stop_gc_watch = gc_pauses.watch_pauses(self.metrics.gc_pause_seconds)
        await self.shell.start()
        if self.config.metrics_port is not None:
            self._metrics_server = start_metrics_server(
                self.config.metrics_port, self.config.metrics_host, self.metrics.registry
            )
            self.metrics_address = f"{self.config.metrics_host}:{self._metrics_server.server_port}"
        await self.sync_registration()
        if self.registry is not None:
            self._registration_task = asyncio.create_task(self._keep_registered())

    def announce(self) -> None:
        log.info(
            "edge agent %s ready on %s (model %s, %s, region %s)",
            self.replica_id,
            self.address,
            self.manifest.model,
            self.manifest.precision,
            self.config.region,
        )

    # --- discovery ---------------------------------------------------------------------------

    async def sync_registration(self) -> None:
        """Registers this agent unless discovery already lists exactly its current record."""
        if self.registry is None:
            return
        async with self._registration_lock:
            record = self.record()
            try:
                listed = await asyncio.to_thread(self.registry.is_registered, record)
                if not listed:
                    await asyncio.to_thread(self.registry.register, record)
            except Exception as error:  # discovery down: serving matters more than being listed
                self._registration_failed(error)
                return
            status = self.discovery
            if status.failing_since is not None:
                log.warning(
                    "discovery %s reachable again after %.0f s; %s is registered",
                    status.spec,
                    time.time() - status.failing_since,
                    self.replica_id,
                )
            elif not listed and record == self._registered:
                log.warning("discovery %s had lost %s; registered it again", status.spec, self.replica_id)
            self._registered = record
            status.registered, status.last_ok_at, status.failing_since, status.last_error = True, time.time(), None, ""

    def _registration_failed(self, error: Exception) -> None:
        status = self.discovery
        status.last_error = f"{type(error).__name__}: {error}"
        if status.failing_since is None:
            status.failing_since = time.time()
            log.warning(
                "could not register %s in discovery %s (%s); serving anyway, trying again every %.0f s",
                self.replica_id,
                status.spec,
                status.last_error,
                self.config.reregister_interval_s,
            )

    async def _keep_registered(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self.config.reregister_interval_s)
            except asyncio.TimeoutError:
                await self.sync_registration()

    # --- switching artifacts -----------------------------------------------------------------

    async def load(self, folder: Path, expected_sha256: str | None = None) -> LoadedArtifact:
        """Verifies and loads another artifact beside the serving one (off the event loop) and starts its engine."""
        loaded = await asyncio.to_thread(
            load_artifact, folder, self.config, self.replica_id, self.metrics, expected_sha256
        )
        loaded.engine.start()
        await loaded.engine.measure_pace()
        return loaded

    async def switch_to(self, loaded: LoadedArtifact) -> LoadedArtifact:
        """New requests go to ``loaded`` from now on. Returns the artifact that served until now: still running,
        so its answers in flight finish; ``retire`` it (or switch back to it)."""
        loaded.engine.metrics = self.metrics
        previous, self.serving = self.serving, loaded
        log.info("edge agent %s now serves %s (was %s)", self.replica_id, loaded.describe(), previous.describe())
        await self.sync_registration()  # the precision tag follows the artifact
        return previous

    async def retire(self, loaded: LoadedArtifact, grace_s: float | None = None) -> None:
        """Lets the answers open on a replaced artifact finish (none new reach it), then stops its engine."""
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        if not await asyncio.to_thread(drain, loaded.engine, grace):
            log.warning("%s still had answers open after %.0f s; stopping it anyway", loaded.describe(), grace)
        # Its gauges would otherwise overwrite the serving engine's.
        loaded.engine.metrics = None
        await asyncio.to_thread(loaded.engine.stop, 0.0)
        # A frozen artifact is never collected, and its engine sits in reference cycles.
        gc_pauses.thaw_for(loaded.describe())

    # --- shutdown ----------------------------------------------------------------------------

    async def stop(self) -> None:
        # Let a registration in flight finish first, or it could land after the deregistration below.
        self._stopping.set()
        if self._registration_task is not None:
            await self._registration_task
        if self.registry is not None:
            try:
                await asyncio.to_thread(self.registry.deregister, self.replica_id)
            except Exception as error:
                log.warning("could not deregister %s from discovery (%s)", self.replica_id, error)
        await self._stop_serving(self.config.drain_grace_s)
        log.info("edge agent %s stopped", self.replica_id)

    async def _stop_serving(self, grace: float) -> None:
        await self.shell.set_not_serving()
        await asyncio.to_thread(self.engine.stop, grace)
        await self.shell.stop(grace)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self._stop_gc_watch()


async def serve_forever(config: EdgeAgentConfig) -> None:
    """Runs an edge agent until SIGINT or SIGTERM, then drains and exits."""
    await serve_until_signalled(EdgeAgent(config), freeze_start_heap=True)


class BackgroundEdgeAgent(BackgroundLoop):
    """An edge agent on its own event loop thread: for tests, benchmarks and `hybrid up`."""

    def __init__(self, config: EdgeAgentConfig):
        super().__init__("edge-agent-loop")
        self.agent: EdgeAgent = self.start_server(EdgeAgent, config)
        self.address = self.agent.address

    def stop(self) -> None:
        self.call(self.agent.stop())
        self.close()
