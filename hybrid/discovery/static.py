"""The embedded default: a YAML file holding the same entries Consul would.

    services:
      - ID: edge-local-1
        Name: hybrid-inference
        Address: 127.0.0.1
        Port: 50061
        Tags: [tier:edge, model:smollm2-135m, precision:int8-b32]
        Meta: {region: local, zone: "", capacity: "32", cost_per_hour: "0.0", grpc_port: "50061"}

Writers hold an exclusive lock and replace the file atomically, so several replicas on one machine
can register at once and a reader never sees half a file.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import yaml

from hybrid import constants
from hybrid.discovery.records import ReplicaRecord


class StaticFileRegistry:
    def __init__(self, path: Path | str = constants.DEFAULT_STATIC_DISCOVERY_FILE):
        self.path = Path(path)

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_services(self) -> list[dict]:
        if not self.path.is_file():
            return []
        data = yaml.safe_load(self.path.read_text()) or {}
        services = data.get("services") or []
        if not isinstance(services, list):
            raise ValueError(f"{self.path}: 'services' must be a list of service entries")
        return services

    def _write_services(self, services: list[dict]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump({"services": services}, handle, sort_keys=False)
        os.replace(tmp, self.path)

    def register(self, record: ReplicaRecord) -> None:
        with self._locked():
            services = [s for s in self._read_services() if s.get("ID") != record.id]
            services.append(record.to_service())
            self._write_services(services)

    def deregister(self, replica_id: str) -> None:
        with self._locked():
            services = self._read_services()
            kept = [s for s in services if s.get("ID") != replica_id]
            if len(kept) != len(services):
                self._write_services(kept)

    def is_registered(self, record: ReplicaRecord) -> bool:
        return record.to_service() in self._read_services()

    def list(self) -> list[ReplicaRecord]:
        return [ReplicaRecord.from_service(s) for s in self._read_services()]
