"""``hybrid cloud serve``: the cloud tier on this machine's Ray, registered in discovery.

Serve's gRPC proxy is the ingress; it is one address for the whole tier, so the tier registers
once (not per replica) with capacity and cost of the tier at ``max_replicas``, the same
convention as the Terraform tier-spec module. Consul checks it with its native gRPC check, which
the proxy routes to ``InferenceDeployment.Check``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

from cloud import defaults
from cloud.config import DeploymentSettings, ReplicaSettings
from hybrid import constants
from hybrid.discovery import ReplicaRecord, registry_from_spec
from hybrid.discovery.upkeep import RegistrationUpkeep
from hybrid.models.registry import model_name

log = logging.getLogger("hybrid.cloud")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (Ray's proxy reuses ports, so a clash would not fail loudly)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def init_ray(num_cpus: int | None = None) -> None:
    """Joins RAY_ADDRESS's cluster, or starts a local one with settings tuned for a small machine."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or None
    ray.init(
        address=address,
        num_cpus=None if address else num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        configure_logging=False,
    )


def start_serve(grpc_port: int, http_port: int | None = None) -> None:
    """Starts Serve with the gRPC proxy on grpc_port (all interfaces: Ray's proxy cannot pick one)."""
    from ray import serve

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
    ):
        self.settings = settings
        self.deployment = deployment
        self.port = port or free_port()
        self.app_name = app_name or settings.tier
        self.cost_per_hour = cost_per_hour
        self.advertise_host = advertise_host
        registry = registry_from_spec(discovery)
        self.registration = (
            None if registry is None else RegistrationUpkeep(registry, self.record, defaults.CLOUD_REREGISTER_INTERVAL_S)
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

    def start(self) -> None:
        init_ray(self.num_cpus)
        if self.deployment.num_gpus is None:
            self.deployment = self.deployment.model_copy(update={"num_gpus": 1.0 if cluster_gpus() else 0.0})
        start_serve(self.port)
        deploy(self.settings, self.deployment, self.app_name)
        if self.registration is not None:
            self.registration.start()
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
