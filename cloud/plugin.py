"""The cloud tier's plugin: how the core's `hybrid` command, `hybrid up` and the overload bench reach it.

Registered under the entry-point group ``hybrid.tiers`` (pyproject.toml). Importing this module
needs no cloud extra: Ray and the tier's code are imported when a command or a start calls for them.
Both starts run the private and the public tier as two Serve applications behind one gRPC proxy, with
every replica also on a port of its own (Serve's direct ingress), where the router reaches it.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hybrid import tiers
from hybrid.discovery import ReplicaRecord

log = logging.getLogger("hybrid.cloud")

# What the cloud extra brings (pyproject.toml): Ray Serve and PyTorch.
CLOUD_MODULES = ("ray", "torch")
KINDS = ("private", "public")


class CloudTierPlugin:
    name = "cloud"
    extra = "cloud"
    # Ray Serve's gRPC proxy and its direct-ingress replica servers bind with add_insecure_port and take no
    # credentials (ray/serve/_private/grpc_util.py, start_grpc_server), so the router reaches them without TLS;
    # `hybrid up` clears this where each replica serves mutual TLS on a port of its own instead.
    plaintext_tiers: tuple[str, ...] = KINDS

    def available(self) -> bool:
        return tiers.modules_installed(*CLOUD_MODULES)

    def add_commands(self, commands: argparse._SubParsersAction) -> None:
        from cloud import commands as cloud_commands

        cloud_commands.add_commands(commands, self)

    def start_local(self, stack: tiers.LocalStack) -> Callable[[], None]:
        """Both tiers on a local Ray cluster started here; the stop shuts the cluster down again."""
        from cloud.config import DeploymentSettings, ReplicaSettings
        from cloud.server import CloudTier, free_port, shutdown_serve
        from hybrid.security.tls import tls_environment

        started: list[CloudTier] = []

        def stop() -> None:
            for tier in started:
                tier.stop()
            shutdown_serve()

        port = stack.port or free_port()  # one Serve proxy for both applications
        # With TLS, each replica serves mutual TLS on a port of its own (cloud.replica_port) with the stack's
        # certificate, which the replicas of a Ray cluster started here find in the environment it inherits.
        own_ports = stack.tls.cert is not None and not os.environ.get("RAY_ADDRESS")
        try:
            with stack.console.status("starting the cloud tier on local Ray: private and public (first start ~30 s)"):
                for kind in KINDS:
                    tier = CloudTier(
                        ReplicaSettings(tier=kind, region=stack.region, replica_port=0 if own_ports else None),
                        # No CPU reservation: on a small machine both replicas share the cores with the edge agent.
                        DeploymentSettings(num_cpus=0),
                        port=port,
                        discovery=stack.discovery,
                        app_name=kind,
                    )
                    with tls_environment(stack.tls if own_ports else None):
                        tier.start()
                    started.append(tier)
                    stack.console.print(f"[bold green]cloud {kind:<7}[/] {tier.address}  (Serve application {kind})")
        except BaseException:
            _quietly(stop)
            raise
        if own_ports:
            self.plaintext_tiers = ()
        return stop

    def start_bench(self, bench: tiers.BenchHost) -> list[ReplicaRecord]:
        """Both tiers on the Ray cluster of this process (a test session's) or on a local one started here;
        where Ray sees GPUs the two applications share them unless ``cloud_num_gpus`` says otherwise."""
        import ray

        from cloud.server import cluster_gpus, free_port, init_ray, shutdown_serve

        config = bench.config
        if not ray.is_initialized():
            bench.on_stop(shutdown_serve)  # we start Ray, so we stop it; a cluster we joined goes on
        init_ray(config.ray_cpus, direct=True)
        num_gpus = config.cloud_num_gpus
        if num_gpus is None:  # two applications sharing what the cluster has, split among their replicas
            num_gpus = min(1.0, cluster_gpus() / 2) / config.cloud_replicas
        port = config.cloud_port or free_port()  # one Serve proxy for both applications
        folder = Path(tempfile.mkdtemp(prefix="hybrid-bench-cloud-"))
        bench.on_stop(lambda: shutil.rmtree(folder, ignore_errors=True))
        return [record for kind in KINDS for record in self._bench_tier(bench, kind, num_gpus, port, folder)]

    @staticmethod
    def _bench_tier(bench: tiers.BenchHost, kind: str, num_gpus: float, port: int, folder: Path) -> list[ReplicaRecord]:
        from cloud.config import DeploymentSettings, ReplicaSettings
        from cloud.server import CloudTier

        config = bench.config
        bench.say(f"starting the cloud tier's {kind} application on local Ray (first start ~30 s)")
        replicas = config.cloud_replicas
        deployment = DeploymentSettings(
            min_replicas=replicas,
            max_replicas=replicas,
            num_cpus=0,  # on a small machine the replicas share the cores with the edge agents
            num_gpus=num_gpus,
            max_ongoing_requests=config.cloud_max_batch_size,
            target_ongoing_requests=max(1.0, config.cloud_max_batch_size / 2),
        )
        settings = ReplicaSettings(
            tier=kind,
            region=f"bench-{kind}",
            model=config.cloud_model,
            random_weights=config.cloud_random_weights,
            max_batch_size=config.cloud_max_batch_size,
            replica_port=0 if config.cloud_own_ports else None,
        )
        tier = CloudTier(
            settings,
            deployment,
            port=port,
            discovery=f"static:{folder / 'cloud.yaml'}",  # where the replicas register themselves
            cost_per_hour=config.cost_per_hour[kind] / replicas,
            app_name=f"bench-{kind}",
            num_cpus=config.ray_cpus,
        )
        tier.start()
        bench.on_stop(tier.stop)
        bench.provisioned(kind, replicas, config.cost_per_hour[kind] / replicas)
        # The proxy's record too: the baseline goes through it, the router to the replicas themselves.
        return [tier.record(), *tier.records()]


def _quietly(stop: Callable[[], None]) -> None:
    try:
        stop()
    except Exception as error:  # the failure that got us here is the one to report
        log.warning("cleaning up the cloud tier failed: %s", error)


plugin = CloudTierPlugin()
