"""Every Serve replica of the cloud tier in discovery, reached on its own gRPC port.

With ``RAY_SERVE_ENABLE_DIRECT_INGRESS=1`` Serve gives each replica of an ingress deployment a gRPC
server of its own on a port of its node (40000 and up), besides the proxy, and lists those ports as the
application's gRPC target group. A router that calls the replicas there skips the proxy's hop and its
per-message streaming round, and reads each replica's own load instead of whichever replica the proxy
picked.

Serve assigns the port only after the replica's constructor returns, so each replica runs a
``ReplicaDirectory``: a thread that waits until Serve lists the replica, registers one record for it
(node address, Serve replica id, capacity, cost), keeps that record listed, and deregisters it when the
replica stops. A replica killed outright cannot deregister itself, so every tick also drops the records
of the application's replicas that Serve no longer runs: the survivors clean up after the dead within
one interval. Serve keeps lifecycle, placement, autoscaling and health; discovery follows it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from hybrid.discovery import Registry, ReplicaRecord
from hybrid.discovery.upkeep import RegistrationUpkeep

log = logging.getLogger("hybrid.cloud")

DIRECT_INGRESS_ENV = "RAY_SERVE_ENABLE_DIRECT_INGRESS"
# Serve holds a stopping direct-ingress replica for this long (30 s by default) so that load balancers
# notice; the router notices within one discovery poll, so a short period saves every scale-down that time.
DRAINING_PERIOD_ENV = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"


def direct_ingress_enabled() -> bool:
    return os.environ.get(DIRECT_INGRESS_ENV, "0") == "1"


@dataclass(frozen=True)
class ServeTarget:
    """One replica as Serve lists it in an application's gRPC target group."""

    serve_replica: str
    ip: str
    port: int


def serve_grpc_targets(app_name: str) -> dict[str, ServeTarget]:
    """The running replicas of ``app_name`` with the gRPC port Serve gave each, by Serve replica id.

    Read from the controller's instance details, the record Serve keeps of its target groups; a replica
    appears there once its port is allocated, and leaves as soon as Serve stops counting it as running.
    """
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    targets: dict[str, ServeTarget] = {}
    for group in details.get("target_groups", []):
        if group.get("app_name") != app_name or str(group.get("protocol")) not in ("gRPC", "RequestProtocol.GRPC"):
            continue
        for target in group.get("targets", []):
            # The actor name is SERVE_REPLICA::<app>#<deployment>#<replica id>.
            replica = target["name"].rsplit("#", 1)[-1]
            targets[replica] = ServeTarget(replica, target["ip"], int(target["port"]))
    return targets


class ReplicaDirectory:
    """Registers one Serve replica once Serve lists its port; prunes the application's dead replicas."""

    def __init__(
        self,
        registry: Registry,
        app_name: str,
        serve_replica: str,
        record_for: Callable[[ServeTarget], ReplicaRecord],
        interval_s: float,
        targets: Callable[[str], dict[str, ServeTarget]] = serve_grpc_targets,
    ):
        self.registry = registry
        self.app_name = app_name
        self.serve_replica = serve_replica
        self.record_for = record_for
        self.interval_s = interval_s
        self.targets = targets
        self.record: ReplicaRecord | None = None
        self._upkeep: RegistrationUpkeep | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-directory", daemon=True)

    def start(self) -> ReplicaDirectory:
        self._thread.start()
        return self

    def tick(self) -> None:
        """Registers this replica when Serve first lists it; drops records of replicas Serve stopped running."""
        targets = self.targets(self.app_name)
        mine = targets.get(self.serve_replica)
        if self.record is None and mine is not None:
            self.record = self.record_for(mine)
            self._upkeep = RegistrationUpkeep(self.registry, lambda: self.record, self.interval_s)
            self._upkeep.sync()
            log.info("replica %s registered at %s:%d", self.record.id, self.record.address, self.record.port)
        elif self._upkeep is not None:
            self._upkeep.sync()
        if targets:  # an empty list is Serve between states, not every replica gone
            self._prune(set(targets))

    def _prune(self, running: set[str]) -> None:
        for record in self.registry.list():
            if record.application == self.app_name and record.serve_replica and record.serve_replica not in running:
                self.registry.deregister(record.id)
                log.info("dropped %s from discovery: Serve no longer runs replica %s", record.id, record.serve_replica)

    def _run(self) -> None:
        # Fast until this replica is registered (Serve assigns its port within about a second), then slow.
        while not self._stop.wait(0.2 if self.record is None else self.interval_s):
            try:
                self.tick()
            except Exception as error:  # discovery or the controller down: keep serving, try again
                log.warning("replica directory of %s: %s; trying again", self.serve_replica, error)

    def stop(self) -> None:
        """Stops following Serve and deregisters this replica."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 5)
        if self.record is not None:
            try:
                self.registry.deregister(self.record.id)
            except Exception as error:
                log.warning("could not deregister %s (%s)", self.record.id, error)
