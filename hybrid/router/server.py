"""The router's gRPC server: hybrid.v1.Inference and RouterAdmin over RouterDataPlane, thin."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import aclosing
from pathlib import Path
from typing import Any

import grpc
from pydantic import BaseModel, Field, model_validator

from hybrid import constants, wire
from hybrid.discovery import DISCOVERY_SPEC_HELP
from hybrid.errors import HybridError
from hybrid.protocol import Tier, request_from_proto
from hybrid.router import defaults
from hybrid.router.dataplane import RouterDataPlane
from hybrid.router.policy.policy import RoutingPolicy
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.request_log import RequestLog, open_log
from hybrid.router.sources import DiscoverySource, source_from_spec
from hybrid.router.view import ReplicaView
from hybrid.security.keys import KeyStore
from hybrid.security.tls import RotatingSSLContext, TlsSettings
from hybrid.serving.background import BackgroundLoop, serve_until_signalled
from hybrid.serving.grpc_shell import (
    INFERENCE_SERVICE,
    ServerShell,
    abort_with,
    parse_generate_request,
    request_of,
)
from hybrid.serving.memory import release_free_memory
from hybrid.serving.ports import start_metrics_server
from hybrid.telemetry import tracing
from hybrid.telemetry.tracing import TracingSettings
from hybrid.v1 import inference_pb2 as pb
from hybrid.v1 import router_admin_pb2 as admin_pb
from hybrid.v1 import router_admin_pb2_grpc as admin_grpc

log = logging.getLogger("hybrid.router")

ROUTER_ADMIN_SERVICE = "hybrid.v1.RouterAdmin"


class RouterConfig(BaseModel):
    """How one router serves; ``tls`` covers both its gRPC server and its channels to replicas."""

    host: str = Field(default=constants.DEFAULT_HOST, description="Address the gRPC server binds.")
    port: int = Field(default=constants.DEFAULT_ROUTER_PORT, ge=0, le=65535, description="gRPC port; 0 picks one.")
    discovery: str = Field(description=f"Where replicas are found: {DISCOVERY_SPEC_HELP} (not none).")
    http_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of the OpenAI-compatible HTTP front; None turns it off."
    )
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="Prometheus /metrics port.")
    metrics_host: str = Field(
        default=constants.DEFAULT_HOST,
        description="Address the /metrics port binds: loopback unless the operator opens it (e.g. 0.0.0.0).",
    )
    tls: TlsSettings = Field(
        default_factory=TlsSettings,
        description="Mutual TLS of the gRPC server, and the certificate the router presents to replicas; none "
        "means plaintext, on loopback only unless tls.plaintext.",
    )
    plaintext_tiers: list[str] = Field(
        default_factory=list,
        description="Tiers whose replicas are reached without TLS although the router has it: those whose servers "
        "cannot serve TLS (Ray Serve's gRPC). Every other replica must present a certificate of tls.ca.",
    )
    http_tls_cert: Path | None = Field(
        default=None, description="PEM certificate of the HTTP front; the gRPC certificate (tls.cert) when unset."
    )
    http_tls_key: Path | None = Field(
        default=None, description="PEM key of http_tls_cert; the gRPC key (tls.key) when unset."
    )
    poll_interval_s: float = Field(
        default=defaults.ROUTER_LOAD_POLL_S, gt=0, description="How often every replica's load is polled."
    )
    drain_grace_s: float = Field(
        default=constants.DRAIN_GRACE_S,
        ge=0,
        description="Streams' time to finish when the router stops, or when their replica leaves discovery.",
    )
    stall_s: float = Field(
        default=defaults.ROUTER_STALL_S,
        gt=0,
        description="A replica with calls open that sends nothing (no chunk, no load report) this long is frozen: "
        "ejected, its calls ended and those without a first token sent elsewhere.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        description="Router processes serving the same ports (SO_REUSEPORT), each with the whole router; 1 serves "
        "in this process. Above 1, the ports must be fixed (not 0) and a supervising parent serves the metrics of "
        "all of them (hybrid.router.workers).",
    )
    keys: str | None = Field(
        default=None,
        description="Key file of the API keys callers must present (hybrid.security.keys; made by `hybrid keys "
        "add`), read again when it changes. None serves anyone, as a router on loopback may.",
    )
    realtime_ttft_ms: float = Field(
        default=defaults.ROUTING_REALTIME_TTFT_MS,
        gt=0,
        description="First-token target of REALTIME requests: they go to the nearest tier expected to meet it "
        "(with ROUTING_TTFT_HEADROOM to spare), and to the soonest expected first token of any tier where none is.",
    )
    request_log: str | None = Field(
        default=None,
        description="Where the request log goes, one JSON line per request: a file path, or '-' for stderr; "
        "None writes none.",
    )
    request_log_sample: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Share of the requests, chosen at random, that the request log keeps."
    )
    tracing: TracingSettings = Field(
        default_factory=TracingSettings,
        description="OpenTelemetry traces: off unless an OTLP endpoint is given here or in the OTEL_* environment.",
    )
    scaling_horizon_s: float = Field(
        default=defaults.SCALING_HORIZON_S,
        ge=0,
        description="How far ahead the scaling signal forecasts each tier's arrival rate: about the time a new "
        "replica takes to start serving. 0 sizes the tiers for the rate now.",
    )
    scaling_target_utilization: float = Field(
        default=defaults.SCALING_TARGET_UTILIZATION,
        gt=0,
        le=1,
        description="Share of a replica's slots the scaling signal plans to fill; the rest absorbs what the "
        "forecast misses.",
    )

    @model_validator(mode="after")
    def _http_pair(self) -> RouterConfig:
        if (self.http_tls_cert is None) != (self.http_tls_key is None):
            raise ValueError(
                "--http-tls-cert and --http-tls-key go together: give both, or neither to use the gRPC pair"
            )
        return self

    def http_tls(self) -> tuple[Path, Path] | None:
        """The HTTP front's certificate and key: its own, else the gRPC server's, else none."""
        if self.http_tls_cert is not None and self.http_tls_key is not None:
            return self.http_tls_cert, self.http_tls_key
        if self.tls.cert is not None and self.tls.key is not None:
            return self.tls.cert, self.tls.key
        return None

    def check_exposure(self) -> None:
        """Refuses what would serve unencrypted beyond loopback (gRPC, the HTTP front), and TLS files that
        cannot be read; the message says what to change."""
        self.tls.check_bind(self.host)
        if self.http_port is not None and self.http_tls() is None:
            self.tls.check_bind(self.host, "the OpenAI HTTP front")
        if self.tls.enabled:
            self.tls.check_server_files()


def relaying_handler(servicer: RouterServicer) -> grpc.GenericRpcHandler:
    """hybrid.v1.Inference with Generate's messages left as bytes both ways (``RouterServicer.Generate``)."""
    return grpc.method_handlers_generic_handler(
        INFERENCE_SERVICE,
        {
            "Generate": grpc.unary_stream_rpc_method_handler(servicer.Generate),
            "GetLoad": grpc.unary_unary_rpc_method_handler(
                servicer.GetLoad,
                request_deserializer=pb.GetLoadRequest.FromString,
                response_serializer=pb.LoadReport.SerializeToString,
            ),
        },
    )


def replica_message(state: ReplicaState, ejected: bool, outstanding: int) -> admin_pb.Replica:
    record = state.record
    return admin_pb.Replica(
        replica_id=record.id,
        address=f"{record.address}:{record.port}",
        tier=int(Tier.parse(record.tier)),
        model=record.model,
        precision=record.precision,
        region=record.region,
        zone=record.zone,
        capacity=record.capacity,
        cost_per_hour=record.cost_per_hour,
        outstanding=outstanding,
        queue_depth=state.queue_depth,
        rtt_ms=state.rtt_ms or 0.0,
        ejected=ejected,
    )


class RouterServicer(admin_grpc.RouterAdminServicer):
    def __init__(self, dataplane: RouterDataPlane):
        self.dataplane = dataplane

    async def Generate(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """The request is read once, for the policy, and relayed as it came; the chunks come back as the replica's
        bytes: the router never writes a message it passes on. The caller's key is checked before its request
        is read."""
        try:
            caller = self.dataplane.caller(wire.authorization_of(context))
            request = request_of(parse_generate_request(raw), context)
            async with aclosing(self.dataplane.relay(request, raw, caller)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except HybridError as error:
            await abort_with(context, error)

    async def GetLoad(self, message: pb.GetLoadRequest, context: grpc.aio.ServicerContext) -> pb.LoadReport:
        await self._checked(context, self.dataplane.caller)
        return self.dataplane.load()

    async def _checked(self, context: grpc.aio.ServicerContext, check) -> None:
        """Aborts the call with the check's error (no key, not an admin key)."""
        try:
            check(wire.authorization_of(context))
        except HybridError as error:
            await context.abort(error.code, error.message)

    async def ListReplicas(self, message, context) -> admin_pb.ListReplicasResponse:
        await self._checked(context, self.dataplane.require_admin)
        self.dataplane.view.refresh()
        outliers, ledger = self.dataplane.policy.outliers, self.dataplane.ledger
        return admin_pb.ListReplicasResponse(
            replicas=[
                replica_message(r, outliers.ejected(r), ledger.outstanding(r.replica_id))
                for r in self.dataplane.view.replicas()
            ]
        )

    async def Explain(self, message: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> admin_pb.ExplainResponse:
        await self._checked(context, self.dataplane.require_admin)
        try:
            request = request_from_proto(message, wire.deadline_of(context))
        except HybridError as error:
            await context.abort(error.code, error.message)
        self.dataplane.view.refresh()
        decision = self.dataplane.explain(request)
        reply = admin_pb.ExplainResponse(
            request_class=decision.request_class.value,
            tier_order=[int(t) for t in decision.tier_order],
            reasons=decision.reasons,
        )
        if decision.chosen is not None:
            outstanding = self.dataplane.ledger.outstanding(decision.chosen.replica_id)
            reply.chosen.CopyFrom(replica_message(decision.chosen, False, outstanding))
        return reply


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(config: RouterConfig) -> str | None:
    """What to tell the operator of a router that serves anyone beyond this machine; None when it does not."""
    if config.keys is not None or is_loopback(config.host):
        return None
    return (
        f"serving on {config.host} without API keys: anyone who reaches it may send requests and read its "
        "replicas; give --keys FILE (made by `hybrid keys add`), or bind 127.0.0.1"
    )


class Router:
    """``start`` serves, ``stop`` drains. Build it inside the event loop it will run on."""

    def __init__(self, config: RouterConfig, source: DiscoverySource | None = None):
        """``source`` stands in for ``config.discovery`` where replicas are known another way (tests)."""
        self.config = config
        config.check_exposure()
        self.shell = ServerShell(
            config.host,
            config.port,
            [INFERENCE_SERVICE, ROUTER_ADMIN_SERVICE],
            reuse_port=self.shares_ports,
            tls=config.tls,
        )
        self.view = ReplicaView(
            source or source_from_spec(config.discovery),
            config.poll_interval_s,
            drain_grace_s=config.drain_grace_s,
            tls=config.tls,
            plaintext_tiers=config.plaintext_tiers,
        )
        policy = RoutingPolicy(realtime_ttft_ms=config.realtime_ttft_ms)
        tracing.configure(config.tracing, "hybrid-router")
        request_log = None
        if config.request_log is not None:
            request_log = RequestLog(open_log(config.request_log), config.request_log_sample)
        keys = KeyStore(config.keys) if config.keys else None
        self.dataplane = RouterDataPlane(
            self.view,
            policy,
            stall_s=config.stall_s,
            request_log=request_log,
            keys=keys,
            replica_share=1.0 / config.workers,
        )
        self.dataplane.scaling.workers = config.workers
        self.dataplane.scaling.horizon_s = config.scaling_horizon_s
        self.dataplane.scaling.target_utilization = config.scaling_target_utilization
        self.address = self.shell.address
        servicer = RouterServicer(self.dataplane)
        self.shell.server.add_generic_rpc_handlers((relaying_handler(servicer),))
        admin_grpc.add_RouterAdminServicer_to_server(servicer, self.shell.server)
        self.http_address: str | None = None
        self.metrics_address: str | None = None
        self._http = None
        self._metrics_server = None
        self._metrics_task: asyncio.Task | None = None

    @property
    def http_url(self) -> str | None:
        """The OpenAI front's base URL, https when it serves TLS."""
        if self.http_address is None:
            return None
        return f"{'https' if self.config.http_tls() else 'http'}://{self.http_address}"

    @property
    def shares_ports(self) -> bool:
        """One of several worker processes serving the same ports."""
        return self.config.workers > 1

    async def start(self) -> None:
        """Serves; where a step fails (a port taken), what had started is stopped before the error goes on."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        # Requests that arrive before discovery's first answer would find no replica at all.
        if not await asyncio.to_thread(self.view.source.wait_ready, defaults.ROUTER_DISCOVERY_WAIT_S):
            log.warning(
                "discovery %s has not answered yet; serving with an empty view until it does", self.config.discovery
            )
        self.view.start()
        await self.view.poll_once()
        await self.shell.start()
        if self.config.metrics_port is not None:
            self._metrics_server = start_metrics_server(
                self.config.metrics_port, self.config.metrics_host, self.dataplane.metrics.registry
            )
            self.metrics_address = f"{self.config.metrics_host}:{self._metrics_server.server_port}"
        if self.config.http_port is not None:
            from hybrid.router.openai import OpenAIFront

            http_tls = self.config.http_tls()
            self._http = OpenAIFront(
                self.dataplane,
                self.config.host,
                self.config.http_port,
                reuse_port=self.shares_ports,
                workers=self.config.workers,
                ssl=RotatingSSLContext(*http_tls) if http_tls else None,
            )
            await self._http.start()
            self.http_address = self._http.address
        self._metrics_task = asyncio.ensure_future(self._observe())
        if (warning := exposure_warning(self.config)) is not None:
            log.warning(warning)
        tiers = {r.record.tier for r in self.view.replicas()}
        log.info(
            "router ready on %s (%d replicas: %s; discovery %s%s)",
            self.address,
            len(self.view.states),
            ", ".join(sorted(tiers)) or "none yet",
            self.config.discovery,
            f"; OpenAI front on {self.http_url}" if self.http_address else "",
        )

    async def _observe(self) -> None:
        while True:
            self.dataplane.observe_discovery()
            self.dataplane.scaling.tick()
            if self.dataplane.usage is not None:
                self.dataplane.usage.settle()
            if self.dataplane.guard is not None:
                # Off the loop: a file of many keys takes a while to read, and requests go on meanwhile.
                await asyncio.to_thread(self.dataplane.guard.store.refresh)
            release_free_memory()  # what a burst of large requests left behind goes back to the system
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        await self.shell.set_not_serving()
        if self._http is not None:
            await self._http.stop()
        await self.shell.stop(self.config.drain_grace_s)
        if self._metrics_task is not None:
            self._metrics_task.cancel()
        await self.view.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        if self.dataplane.request_log is not None:
            self.dataplane.request_log.close()
        log.info("router stopped")


async def serve_forever(config: RouterConfig) -> None:
    """Runs the router until SIGINT or SIGTERM, then drains and exits."""
    await serve_until_signalled(Router(config))


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Runs a router process's event loop to the end of ``main``: uvloop's where it is installed, whose loop
    costs each routed request about a tenth less CPU than asyncio's own, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


class BackgroundRouter(BackgroundLoop):
    """A router on its own event loop thread: for tests, benchmarks and `hybrid up`."""

    def __init__(self, config: RouterConfig):
        super().__init__("router-loop")
        self.router: Router = self.start_server(Router, config)
        self.address = self.router.address
        self.http_address = self.router.http_address
        self.http_url = self.router.http_url

    def stop(self) -> None:
        self.call(self.router.stop())
        self.close()
