"""Keeping a registration alive: discovery can lose a replica (a deleted or rewritten static file, a Consul
agent restarted without its state), and a replica that is not listed gets no traffic however well it serves.
So a replica checks now and then that discovery lists exactly its record, and registers again when not."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hybrid.discovery.records import Registry, ReplicaRecord

log = logging.getLogger("hybrid.discovery")


class RegistrationUpkeep:
    """A thread that registers ``record()`` at start and again whenever discovery stops listing it."""

    def __init__(self, registry: Registry, record: Callable[[], ReplicaRecord], interval_s: float):
        self.registry = registry
        self.record = record
        self.interval_s = interval_s
        self.failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registration", daemon=True)

    def start(self) -> None:
        self.sync()
        self._thread.start()

    def sync(self) -> None:
        record = self.record()
        try:
            if self.registry.is_registered(record):
                return
            self.registry.register(record)
        except Exception as error:  # discovery down: serving matters more than being listed
            if not self.failing:
                log.warning("could not register %s in discovery (%s); serving anyway, trying again", record.id, error)
            self.failing = True
            return
        if self.failing or self._thread.is_alive():
            log.warning("discovery had lost %s; registered it again", record.id)
        self.failing = False

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sync()

    def stop(self) -> None:
        """Stops checking and deregisters (a replica that stops must not outlive its process in discovery)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 5)
        replica_id = self.record().id
        try:
            self.registry.deregister(replica_id)
        except Exception as error:
            log.warning("could not deregister %s (%s)", replica_id, error)
