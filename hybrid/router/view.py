"""The router's view of the replicas: discovery's records plus what it measures of each.

The ``ReplicaView`` keeps one ``ReplicaState`` and one gRPC channel per replica that discovery lists
(``hybrid.router.sources``), and polls every replica's ``GetLoad`` to learn its queue, its pace and the
round trip to it. A replica that leaves discovery is *leaving*: no new request reaches it, but its channel
stays open until the answers it is streaming end (or a grace passes), so that leaving never cuts them.
Every ``tick_s`` it runs its watchers (the liveness check) and closes what has finished leaving.

With TLS settings the channels speak mutual TLS: the router presents its certificate, and a replica must present
one of the deployment's CA to be reached at all. When the files change, every replica gets a new channel for
new calls; the old one closes once the answers on it end (or ``drain_grace_s`` passes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from hybrid import constants, wire
from hybrid.discovery import ReplicaRecord
from hybrid.discovery.records import prefer_direct_replicas
from hybrid.engine.pace import Pace
from hybrid.router import defaults
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.sources import DiscoverySource
from hybrid.security.tls import ClientCredentials, TlsSettings
from hybrid.serving.grpc_shell import INFERENCE_SERVICE
from hybrid.v1 import inference_pb2 as pb
from hybrid.v1 import inference_pb2_grpc as pb_grpc

log = logging.getLogger("hybrid.router")

GENERATE_METHOD = f"/{INFERENCE_SERVICE}/Generate"


class ReplicaClient(pb_grpc.InferenceStub):
    """The generated client of one replica, plus ``generate_bytes``: Generate with both messages left as bytes.

    The router relays the caller's request as it came and the replica's chunks as they come: it reads each
    chunk once, for the call's bookkeeping, and never writes one again."""

    def __init__(self, channel: grpc.aio.Channel):
        super().__init__(channel)
        self.generate_bytes = channel.unary_stream(GENERATE_METHOD)


@dataclass
class _Leaving:
    state: ReplicaState
    since: float


class ReplicaView:
    def __init__(
        self,
        source: DiscoverySource,
        poll_interval_s: float = defaults.ROUTER_LOAD_POLL_S,
        drain_grace_s: float = constants.DRAIN_GRACE_S,
        tick_s: float = defaults.ROUTER_TICK_S,
        tls: TlsSettings | None = None,
        plaintext_tiers: list[str] | tuple[str, ...] = (),
    ):
        """``tls``: the router's certificate, presented to replicas, and the CA theirs must chain to; replicas of
        ``plaintext_tiers`` are reached without it (tiers whose servers cannot serve TLS)."""
        self.source = source
        self.credentials: ClientCredentials | None = tls.client_credentials() if tls and tls.enabled else None
        self.plaintext_tiers = frozenset(plaintext_tiers)
        self.poll_interval_s = poll_interval_s
        self.drain_grace_s = drain_grace_s
        self.tick_s = tick_s
        self.states: dict[str, ReplicaState] = {}
        # One gRPC client per replica, on its channel.
        self.replica_clients: dict[str, ReplicaClient] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._leaving: dict[str, _Leaving] = {}
        self._tasks: list[asyncio.Task] = []
        # Set by the data plane: what a failed or answered load poll means, and the calls open on a replica.
        self.on_poll_failure: Callable[[ReplicaState, grpc.aio.AioRpcError], None] | None = None
        self.on_poll_success: Callable[[ReplicaState], None] | None = None
        self.open_calls: Callable[[str], int] = lambda replica_id: 0
        self.abandon_calls: Callable[[str, str], None] = lambda replica_id, reason: None
        # Run every tick (the liveness check).
        self.watchers: list[Callable[[], None]] = []

    def refresh(self) -> None:
        """Brings the states in line with discovery: new replicas join, gone ones start leaving, changed ones update."""
        records = {r.id: r for r in prefer_direct_replicas(self.source.records())}
        now = time.monotonic()
        for gone in set(self.states) - set(records):
            self._leaving[gone] = _Leaving(self.states.pop(gone), now)
            log.info("%s left discovery; draining the answers it streams", gone)
        for replica_id, record in records.items():
            state = self.states.get(replica_id)
            if state is None and replica_id in self._leaving:
                state = self.states[replica_id] = self._leaving.pop(replica_id).state
                log.info("%s is listed again", replica_id)
            if state is None:
                self.states[replica_id] = ReplicaState(record=record)
                self._connect(record)
            elif state.record != record:
                if (state.record.address, state.record.port) != (record.address, record.port):
                    self._connect(record)
                state.record = record

    def _connect(self, record: ReplicaRecord, grace_s: float | None = None) -> None:
        """A new channel to ``record``; the old one closes after ``grace_s`` (at once when None: it moved)."""
        old = self._channels.pop(record.id, None)
        if old is not None:
            asyncio.ensure_future(old.close(grace_s))
        target = f"{record.address}:{record.port}"
        if self.credentials is None or record.tier in self.plaintext_tiers:
            channel = grpc.aio.insecure_channel(target, options=wire.RECONNECT_OPTIONS)
        else:
            channel = grpc.aio.secure_channel(target, self.credentials.credentials, options=wire.RECONNECT_OPTIONS)
        self._channels[record.id] = channel
        self.replica_clients[record.id] = ReplicaClient(channel)

    def _follow_rotation(self) -> None:
        """Reopens every replica's channel when the router's certificate files changed; calls on the old channels
        finish there."""
        if self.credentials is None or not self.credentials.changed():
            return
        log.info("TLS files changed; new calls to the %d replicas use the new certificate", len(self.states))
        for state in self.states.values():
            if state.record.tier not in self.plaintext_tiers:
                self._connect(state.record, grace_s=self.drain_grace_s)

    def _finish_leaving(self, now: float) -> None:
        """Closes the channel of each leaving replica once its answers ended, or its grace ran out."""
        for replica_id, leaving in list(self._leaving.items()):
            open_calls = self.open_calls(replica_id)
            if open_calls and now - leaving.since < self.drain_grace_s:
                continue
            if open_calls:
                self.abandon_calls(replica_id, f"{replica_id} left discovery {self.drain_grace_s:.0f} s ago")
            del self._leaving[replica_id]
            self.replica_clients.pop(replica_id, None)
            channel = self._channels.pop(replica_id, None)
            if channel is not None:
                asyncio.ensure_future(channel.close())

    def replicas(self) -> list[ReplicaState]:
        """The replicas that may take new requests: those discovery lists."""
        return list(self.states.values())

    def leaving(self) -> list[ReplicaState]:
        """The replicas gone from discovery whose answers in flight are still streaming."""
        return [leaving.state for leaving in self._leaving.values()]

    def tier_peers(self, state: ReplicaState) -> list[ReplicaState]:
        """The replicas of its tier, itself included."""
        return [r for r in self.states.values() if r.record.tier == state.record.tier]

    async def poll_once(self) -> None:
        self.refresh()
        await asyncio.gather(*(self._poll(state) for state in list(self.states.values())))

    async def _poll(self, state: ReplicaState) -> None:
        client = self.replica_clients.get(state.record.id)
        if client is None:
            return
        started = time.monotonic()
        try:
            load = await client.GetLoad(
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
        state.observe_pace(Pace(load.token_ms_base, load.token_ms_per_row))
        if self.on_poll_success is not None:
            self.on_poll_success(state)

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # the view must outlive any one bad poll
                log.exception("replica poll failed")
            await asyncio.sleep(self.poll_interval_s)

    async def _tick_forever(self) -> None:
        # Apart from the polls: a frozen replica holds a poll for its whole timeout, and must not hold this.
        while True:
            try:
                self._finish_leaving(time.monotonic())
                self._follow_rotation()
                for watch in self.watchers:
                    watch()
            except Exception:
                log.exception("replica watch failed")
            await asyncio.sleep(self.tick_s)

    def start(self) -> None:
        self.refresh()
        self._tasks = [asyncio.ensure_future(self._poll_forever()), asyncio.ensure_future(self._tick_forever())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for channel in self._channels.values():
            await channel.close()
        self.source.close()
