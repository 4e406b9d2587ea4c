"""Where the router learns of replicas: the static file (re-read when it changes) or Consul (a blocking-query
watcher that keeps its last view during an outage). Either way an outage keeps the last view."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol

from hybrid.discovery import ReplicaRecord
from hybrid.discovery.spec import parse_discovery_spec
from hybrid.discovery.static import StaticFileRegistry

log = logging.getLogger("hybrid.router")


class DiscoverySource(Protocol):
    healthy: bool

    def records(self) -> list[ReplicaRecord]: ...

    def staleness_s(self) -> float: ...

    def wait_ready(self, timeout_s: float) -> bool:
        """Waits (bounded) for the first answer; False when none came in time."""
        ...

    def close(self) -> None: ...


class StaticSource:
    """The static YAML file, re-read whenever its modification time changes."""

    def __init__(self, path: Path | str):
        self.registry = StaticFileRegistry(path)
        self.path = Path(path)
        self.healthy = True
        self._stamp: tuple[int, int] | None = None
        self._records: list[ReplicaRecord] = []
        self._read_at = time.monotonic()

    def records(self) -> list[ReplicaRecord]:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError as error:
            # A missing or unreadable file is an outage of discovery, not a fleet that vanished: replicas
            # keep serving, so the router keeps its last view and says it is running blind.
            self._fault(f"{type(error).__name__}: {error.strerror or error}")
            return list(self._records)
        if stamp != self._stamp:
            try:
                self._records = self.registry.list()
            except Exception as error:  # a half-edited file: keep the last good view
                self._fault(str(error))
                return list(self._records)
            self._stamp = stamp
        if not self.healthy:
            log.warning("discovery file %s readable again (%d replicas)", self.path, len(self._records))
            self.healthy = True
        self._read_at = time.monotonic()
        return list(self._records)

    def _fault(self, reason: str) -> None:
        if self.healthy:  # logged once per outage, however often the view asks
            log.warning(
                "discovery file %s: %s; keeping the last view of %d replicas", self.path, reason, len(self._records)
            )
        self.healthy = False

    def staleness_s(self) -> float:
        return time.monotonic() - self._read_at

    def wait_ready(self, timeout_s: float) -> bool:
        return True  # a file answers at once: with its replicas, or with a fault that records() reports

    def close(self) -> None:
        pass


class ConsulSource:
    def __init__(self, address: str | None = None):
        from hybrid.discovery.consul import ConsulWatcher

        self.watcher = ConsulWatcher(address).start()

    @property
    def healthy(self) -> bool:
        return self.watcher.healthy

    def records(self) -> list[ReplicaRecord]:
        return self.watcher.replicas

    def staleness_s(self) -> float:
        return self.watcher.staleness_s()

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.watcher.staleness_s() == float("inf"):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self.watcher.stop()


def source_from_spec(spec: str) -> DiscoverySource:
    parsed = parse_discovery_spec(spec)
    if parsed.kind == "static":
        return StaticSource(parsed.path)
    if parsed.kind == "consul":
        return ConsulSource(parsed.address)
    raise ValueError(f"the router needs discovery: use static:FILE, consul or consul:HOST:PORT, not {spec!r}")
