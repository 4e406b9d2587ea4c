"""``hybrid cloud serve``: the cloud tier on this machine's Ray, registered in discovery.

Direct (the default): Serve runs with direct ingress, every replica serves on a gRPC port of its own
node and registers itself there, one record per replica with its own capacity and cost
(``cloud.directory``). The router reaches each replica without the proxy and reads its load.

Through the proxy (``direct=False``): Serve's gRPC proxy is one address for the whole tier, so the
tier registers once with capacity and cost of the tier at ``max_replicas``, the same convention as
the Terraform tier-spec module.

Either way Consul checks each record with its native gRPC check, routed to ``InferenceDeployment.Check``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from cloud import defaults
from cloud.config import DeploymentSettings, ReplicaSettings
from cloud.directory import DIRECT_INGRESS_ENV, DRAINING_PERIOD_ENV
from hybrid import constants
from hybrid.discovery import ReplicaRecord, registry_from_spec
from hybrid.discovery.upkeep import RegistrationUpkeep
from hybrid.models.registry import model_name
from hybrid.serving.ports import free_port

log = logging.getLogger("hybrid.cloud")


# What Ray says when a local head missed one of its fixed start-up waits.
_SLOW_HEAD_START = ("Timed out waiting for file", "timed out during startup")


def init_ray(num_cpus: int | None = None, direct: bool = False) -> None:
    """Joins RAY_ADDRESS's cluster, or starts a local one with settings tuned for a small machine.

    ``direct`` turns on Serve's direct ingress for a cluster this process starts (its processes inherit
    the environment); a cluster joined by address must have it set on its nodes already.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if direct:
        os.environ[DIRECT_INGRESS_ENV] = "1"
        os.environ.setdefault(DRAINING_PERIOD_ENV, str(defaults.CLOUD_DIRECT_DRAINING_PERIOD_S))
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or None
    for attempt in (1, 2):
        try:
            ray.init(
                address=address,
                num_cpus=None if address else num_cpus,
                include_dashboard=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
            return
        except Exception as error:  # Ray raises a bare Exception for the raylet's wait
            # On a busy small machine a local head can miss one of Ray's fixed waits (30 s for the raylet to
            # register, some for the GCS's port file): once more.
            if address or attempt == 2 or not any(slow in str(error) for slow in _SLOW_HEAD_START):
                raise
            log.warning("Ray's head did not start in time (%s); starting it once more", error)
            ray.shutdown()


def start_serve(grpc_port: int, http_port: int | None = None) -> None:
    """Starts Serve with the gRPC proxy on grpc_port (all interfaces: Ray's proxy cannot pick one)."""
    from ray import serve

    log.warning(
        "Ray Serve's gRPC proxy (port %d) and its replicas' own ports (40000 and up) listen on every interface "
        "without TLS: Serve cannot serve gRPC with TLS. Firewall them to the router's hosts.",
        grpc_port,
    )
    serve.start(
        http_options={"host": constants.DEFAULT_HOST, "port": http_port or free_port()},
        grpc_options={"port": grpc_port, "grpc_servicer_functions": list(defaults.CLOUD_GRPC_SERVICER_FUNCTIONS)},
        logging_config={"enable_access_log": False},
    )


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def deploy(settings: ReplicaSettings, deployment: DeploymentSettings, app_name: str) -> None:
    """Deploys (or updates) one tier as a Serve application and waits until it runs."""
    from ray import serve

    from cloud.app import build_app

    args = {**settings.model_dump(), "deployment": deployment.model_dump()}
    serve.run(
        build_app(args),
        name=app_name,
        route_prefix=f"/{app_name}",
        blocking=False,
        logging_config={"enable_access_log": False},
    )


def _replica_advertise_host(advertise_host: str) -> str:
    # A cluster started here has every replica on this machine, reached on loopback like the rest of the
    # local stack; a joined cluster's replicas are on its nodes, at the node address Serve reports ("").
    if advertise_host == constants.DEFAULT_HOST and os.environ.get("RAY_ADDRESS"):
        return ""
    return advertise_host


class CloudTier:
    """One tier on local Ray: ``start`` deploys and registers it, ``stop`` deregisters and tears down."""

    def __init__(
        self,
        settings: ReplicaSettings,
        deployment: DeploymentSettings,
        port: int = constants.DEFAULT_CLOUD_GRPC_PORT,
        discovery: str = "none",
        cost_per_hour: float = 0.0,
        advertise_host: str = constants.DEFAULT_HOST,
        app_name: str = "",
        num_cpus: int | None = None,
        direct: bool = True,
    ):
        self.direct = direct
        if direct:  # each replica registers itself, with its own share of the cost
            settings = settings.model_copy(
                update={
                    "discovery": discovery,
                    "cost_per_hour": cost_per_hour,
                    "advertise_host": settings.advertise_host or _replica_advertise_host(advertise_host),
                }
            )
        self.settings = settings
        self.deployment = deployment
        self.port = port or free_port()
        self.app_name = app_name or settings.tier
        self.cost_per_hour = cost_per_hour
        self.advertise_host = advertise_host
        registry = None if direct else registry_from_spec(discovery)
        self.registration = (
            None
            if registry is None
            else RegistrationUpkeep(registry, self.record, defaults.CLOUD_REREGISTER_INTERVAL_S)
        )
        self.num_cpus = num_cpus
        self.address = f"{advertise_host}:{self.port}"

    @property
    def replica_id(self) -> str:
        return f"cloud-{self.app_name}-{self.settings.region}-{self.port}"

    def record(self) -> ReplicaRecord:
        precision = self.settings.precision
        if precision == "auto":
            precision = "bf16" if self.deployment.num_gpus else "fp32"
        return ReplicaRecord(
            id=self.replica_id,
            address=self.advertise_host,
            port=self.port,
            tier=self.settings.tier,
            model=model_name(self.settings.model),
            precision=precision,
            region=self.settings.region,
            zone=self.settings.zone,
            # As the Terraform tier-spec module counts it: what Serve lets the tier hold at once.
            capacity=self.deployment.max_replicas * self.deployment.max_ongoing_requests,
            cost_per_hour=self.deployment.max_replicas * self.cost_per_hour,
            application=self.app_name,
        )

    def records(self, timeout_s: float = 120.0) -> list[ReplicaRecord]:
        """What the tier registered: through the proxy, its one record; direct, one per replica, once
        ``min_replicas`` of them are listed in discovery (each registers itself when Serve gives it a port)."""
        if not self.direct:
            return [self.record()]
        registry = registry_from_spec(self.settings.discovery)
        if registry is None:
            raise ValueError("replicas reached directly register themselves: give the tier a discovery spec")
        deadline = time.monotonic() + timeout_s
        while True:
            mine = [r for r in registry.list() if r.application == self.app_name and r.serve_replica]
            if len(mine) >= max(1, self.deployment.min_replicas):
                return mine
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(mine)} of {self.deployment.min_replicas} replicas of {self.app_name} registered within "
                    f"{timeout_s:.0f} s: is RAY_SERVE_ENABLE_DIRECT_INGRESS=1 set on the cluster's nodes?"
                )
            time.sleep(0.2)

    def start(self) -> None:
        init_ray(self.num_cpus, direct=self.direct)
        if self.deployment.num_gpus is None:
            self.deployment = self.deployment.model_copy(update={"num_gpus": 1.0 if cluster_gpus() else 0.0})
        start_serve(self.port)
        deploy(self.settings, self.deployment, self.app_name)
        if self.registration is not None:
            self.registration.start()
        if self.direct and registry_from_spec(self.settings.discovery) is not None:
            for record in self.records():  # ready once listed: the replicas register within a second or two
                log.info("replica %s registered at %s:%d", record.id, record.address, record.port)
        log.info(
            "cloud tier %s ready on %s (app %s, model %s, %s replica(s) of %d sequences, region %s)",
            self.settings.tier,
            self.address,
            self.app_name,
            self.settings.model,
            f"{self.deployment.min_replicas}-{self.deployment.max_replicas}",
            self.settings.max_batch_size,
            self.settings.region,
        )

    def stop(self) -> None:
        """Deregisters and deletes this tier's application; other applications of the cluster go on."""
        from ray import serve

        if self.registration is not None:
            self.registration.stop()
        serve.delete(self.app_name)
        log.info("cloud tier %s stopped", self.settings.tier)


def shutdown_serve() -> None:
    """Stops Serve and, when this process started it, the local Ray cluster."""
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def serve_forever(tier: CloudTier) -> None:
    """Runs the tier until SIGINT or SIGTERM, then deregisters and shuts Serve down."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    tier.start()
    stop.wait()
    tier.stop()
    shutdown_serve()
