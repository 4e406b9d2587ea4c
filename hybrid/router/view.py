"""The router's view of the replicas: discovery's records plus what it measures of each.

A ``DiscoverySource`` yields the current records (the static file, re-read when it changes, or
Consul through a blocking-query watcher that keeps its last view during an outage). The
``ReplicaView`` keeps one ``ReplicaState`` and one gRPC channel per replica, and polls every
replica's ``GetLoad`` to learn its queue, its mean request time and the round-trip time to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Protocol

import grpc

from hybrid import wire
from hybrid.discovery import ReplicaRecord
from hybrid.discovery.static import StaticFileRegistry
from hybrid.engine.pace import Pace
from hybrid.router import defaults
from hybrid.router.policy.replica import ReplicaState
from hybrid.v1 import inference_pb2 as pb
from hybrid.v1 import inference_pb2_grpc as pb_grpc

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
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            try:
                self._records = self.registry.list() if stamp else []
                self._stamp = stamp
                self.healthy = True
            except Exception as error:  # a half-edited file: keep the last good view
                self.healthy = False
                log.warning("could not read %s (%s); keeping the last view", self.path, error)
        self._read_at = time.monotonic()
        return list(self._records)

    def staleness_s(self) -> float:
        return time.monotonic() - self._read_at

    def wait_ready(self, timeout_s: float) -> bool:
        return True  # a missing file is an empty view, known at once

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
    if spec.startswith("static:"):
        return StaticSource(spec[len("static:") :])
    if spec == "consul" or spec.startswith("consul:"):
        return ConsulSource(spec[len("consul:") :] or None)
    raise ValueError(f"the router needs discovery: use static:FILE, consul or consul:HOST:PORT, not {spec!r}")


class ReplicaView:
    def __init__(self, source: DiscoverySource, poll_interval_s: float = defaults.ROUTER_LOAD_POLL_S):
        self.source = source
        self.poll_interval_s = poll_interval_s
        self.states: dict[str, ReplicaState] = {}
        self.stubs: dict[str, pb_grpc.InferenceStub] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._task: asyncio.Task | None = None
        self.on_poll_failure = None  # set by the data plane: a replica that cannot answer GetLoad is failing

    def refresh(self) -> None:
        """Brings the states in line with discovery: new replicas join, gone ones leave, changed ones update."""
        records = {r.id: r for r in self.source.records()}
        for gone in set(self.states) - set(records):
            del self.states[gone]
            self.stubs.pop(gone, None)
            channel = self._channels.pop(gone, None)
            if channel is not None:
                asyncio.ensure_future(channel.close())
        for replica_id, record in records.items():
            state = self.states.get(replica_id)
            if state is None:
                self.states[replica_id] = ReplicaState(record=record)
                self._connect(record)
            elif state.record != record:
                if (state.record.address, state.record.port) != (record.address, record.port):
                    self._connect(record)
                state.record = record

    def _connect(self, record: ReplicaRecord) -> None:
        old = self._channels.pop(record.id, None)
        if old is not None:
            asyncio.ensure_future(old.close())
        channel = grpc.aio.insecure_channel(f"{record.address}:{record.port}")
        self._channels[record.id] = channel
        self.stubs[record.id] = pb_grpc.InferenceStub(channel)

    def replicas(self) -> list[ReplicaState]:
        return list(self.states.values())

    def tier_peers(self, state: ReplicaState) -> list[ReplicaState]:
        """The replicas of its tier, itself included."""
        return [r for r in self.states.values() if r.record.tier == state.record.tier]

    async def poll_once(self) -> None:
        self.refresh()
        await asyncio.gather(*(self._poll(state) for state in list(self.states.values())))

    async def _poll(self, state: ReplicaState) -> None:
        stub = self.stubs.get(state.record.id)
        if stub is None:
            return
        started = time.monotonic()
        try:
            load = await stub.GetLoad(
                pb.GetLoadRequest(),
                timeout=defaults.ROUTER_LOAD_TIMEOUT_S,
                metadata=wire.call_metadata(state.record.application),
            )
        except grpc.aio.AioRpcError as error:
            if self.on_poll_failure is not None:
                self.on_poll_failure(state, error)
            return
        state.observe_rtt((time.monotonic() - started) * 1000)
        state.queue_depth = load.queue_depth
        state.active = load.active
        state.mean_request_ms = load.mean_request_ms
        state.recent_ttft_p90_ms = load.recent_ttft_p90_ms
        state.draining = load.draining
        state.pace = Pace(load.token_ms_base, load.token_ms_per_row)

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # the view must outlive any one bad poll
                log.exception("replica poll failed")
            await asyncio.sleep(self.poll_interval_s)

    def start(self) -> None:
        self.refresh()
        self._task = asyncio.ensure_future(self.run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for channel in self._channels.values():
            await channel.close()
        self.source.close()
