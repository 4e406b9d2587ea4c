"""`hybrid-edge run`: the agent of an installed node.

It serves PREFIX/artifacts/current, or, when that fails its checks at start, the previous artifact
(the last good one), and says why. On SIGHUP (`hybrid-edge update`, `systemctl reload`) it switches
to whatever `current` points at without dropping a request:

1. load the new artifact beside the serving one and answer the canary with it, still unseen;
2. send new requests to it; answers already running on the old engine finish there;
3. probation: the old engine stays loaded; if the new one fails within the window, requests go back
   to the old one at once, `current` and `previous` are restored, and the update is rolled back;
4. after the window the old engine is drained and stopped.

Every outcome lands in PREFIX/state.json. It keeps serving while Consul or the router are away:
the EdgeAgent registers again by itself when discovery returns, and the router is only probed, for
the logs and `hybrid-edge status`, in PREFIX/run/agent.json.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge_agent import defaults
from edge_agent.artifacts.store import ArtifactStore, Links
from edge_agent.node.canary import run_canary
from edge_agent.node.config import (
    AgentRuntime,
    EdgeNodeError,
    NodeConfig,
    StateFile,
    UpdateRecord,
    write_runtime,
)
from edge_agent.server import EdgeAgent, LoadedArtifact, load_artifact
from hybrid.security.tls import TlsSettings, secure_channel

log = logging.getLogger("hybrid.edge.node")


class RouterProbe:
    """Whether the router answers grpc.health.v1 (any answer counts as reachable); logs the changes."""

    def __init__(self, address: str, tls: TlsSettings | None = None):
        """``tls``: the node's certificate, presented to a router with mutual TLS."""
        self.address = address
        self.tls = tls
        self.reachable: bool | None = None
        self.since: float | None = None
        self.last_error = ""

    async def check(self) -> None:
        try:
            async with secure_channel(self.address, self.tls) as channel:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=defaults.EDGE_ROUTER_PROBE_TIMEOUT_S
                )
            reachable, error = True, ""
        except grpc.aio.AioRpcError as failure:
            reachable, error = False, f"{failure.code().name}: {failure.details()}"
        if reachable != self.reachable:
            if not reachable:
                log.warning(
                    "router %s unreachable (%s); serving on, it finds this agent through discovery when back",
                    self.address,
                    error,
                )
            elif self.reachable is False:
                log.warning("router %s reachable again after %.0f s", self.address, time.time() - (self.since or 0))
            self.since = time.time()
        self.reachable, self.last_error = reachable, error

    def to_dict(self) -> dict:
        return {
            "address": self.address,
            "reachable": self.reachable,
            "since": self.since,
            "last_error": self.last_error,
        }


class NodeAgent:
    def __init__(self, node: NodeConfig):
        self.node = node
        self.layout = node.layout
        self.store = ArtifactStore(self.layout.artifacts)
        self.state = StateFile(self.layout.state_file)
        self._close_interrupted_update()
        loaded = self._load_last_good()
        self.agent = EdgeAgent(node.agent_config(loaded.folder), loaded=loaded)
        self.address = self.agent.address
        self.router = RouterProbe(node.router, node.tls) if node.router else None
        self.started_at = time.time()
        self._standby: LoadedArtifact | None = None
        self._switch_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    # --- start-up ----------------------------------------------------------------------------

    def _close_interrupted_update(self) -> None:
        # An agent that died during a switch left its record open (an updater's "checking" one is the updater's).
        last = self.state.read().last
        if last is not None and last.outcome in ("switching", "probation") and last.links_before:
            self._interrupt(last)

    def _load_last_good(self) -> LoadedArtifact:
        links = self.store.links()
        failures: list[str] = []
        for role, sha in (("current", links.current), ("previous", links.previous)):
            if sha is None or (role == "previous" and sha == links.current):
                continue
            try:
                loaded = load_artifact(
                    self.store.path(sha), self.node, self.node.resolved_replica_id(self.node.port), expected_sha256=sha
                )
            except Exception as error:
                log.warning("cannot serve the %s artifact %s: %s", role, sha[:12], error)
                failures.append(f"{role} {sha[:12]}: {error}")
                continue
            if failures:
                log.warning("serving the previous artifact %s instead; `current` now points at it", sha[:12])
                with self.store.locked():
                    self.store.set_links(Links(current=sha, previous=None))
                self.state.finish(
                    UpdateRecord(source="start", from_sha256=links.current, to_sha256=sha, outcome="fell_back"),
                    "fell_back",
                    f"at start the current artifact failed its checks ({failures[0]}); serving the last good one",
                    to_precision=loaded.manifest.precision,
                )
            return loaded
        reasons = "; ".join(failures) or f"{self.store.root} holds no current artifact"
        raise EdgeNodeError(
            f"no artifact of this node can be served ({reasons}): run `hybrid-edge install --artifact URL "
            "--sha256 H` (or `hybrid-edge update`) again"
        )

    async def start(self) -> None:
        # Installed before the pid is published, so a SIGHUP never finds the default action (exit).
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_hangup)
        except (RuntimeError, ValueError):
            log.info("not on the main thread: no SIGHUP handler; call reload() to switch")
        await self.agent.start(announce=False)
        # Ready means findable: `hybrid-edge status` and `update` read this report.
        await self._report()
        self._spawn(self._monitor())
        self.agent.announce()

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_hangup(self) -> None:
        log.info("SIGHUP: switching to %s if it changed", self.store.root / "current")
        self._spawn(self.reload())

    # --- reporting ---------------------------------------------------------------------------

    async def _monitor(self) -> None:
        while not self._stopping.is_set():
            if self.router is not None:
                await self.router.check()
            await self._report()
            try:
                await asyncio.wait_for(self._stopping.wait(), self.node.reregister_interval_s)
            except asyncio.TimeoutError:
                pass

    async def _report(self) -> None:
        serving = self.agent.serving
        runtime = AgentRuntime(
            pid=os.getpid(),
            address=self.address,
            replica_id=self.agent.replica_id,
            started_at=self.started_at,
            serving_sha256=serving.sha256,
            serving_precision=serving.manifest.precision,
            model=serving.manifest.model,
            standby_sha256=self._standby.sha256 if self._standby else None,
            discovery=self.agent.discovery.to_dict(),
            router=self.router.to_dict() if self.router else {},
        )
        await asyncio.to_thread(write_runtime, self.layout, runtime)

    # --- switching ---------------------------------------------------------------------------

    def _pending_record(self, target: str) -> UpdateRecord | None:
        last = self.state.read().last
        if last is not None and not last.finished and last.to_sha256 == target:
            return last
        return None

    async def reload(self) -> None:
        """Switches to `current` when it is not what serves; rolls back on any failure."""
        async with self._switch_lock:
            links = self.store.links()
            serving = self.agent.serving
            target = links.current
            if target is None or target == serving.sha256:
                log.info("already serving %s; nothing to switch", serving.describe())
                return
            # Flipped by hand (then `systemctl reload`): a rollback returns to what serves now.
            before = {
                "current": serving.sha256,
                "previous": links.previous if links.previous != serving.sha256 else None,
            }
            record = self._pending_record(target) or UpdateRecord(
                source="SIGHUP", from_sha256=serving.sha256, to_sha256=target, outcome="switching", links_before=before
            )
            self.state.save(record)
            await self._switch(record, target)
            await self._report()

    async def _switch(self, record: UpdateRecord, target: str) -> None:
        try:
            candidate = await self.agent.load(self.store.path(target), expected_sha256=target)
        except Exception as error:
            self._give_up(record, f"the agent could not load it: {type(error).__name__}: {error}")
            return
        record.to_precision = candidate.manifest.precision
        canary = await run_canary(candidate.engine, self.node.update)
        if self._stopping.is_set():
            await asyncio.to_thread(candidate.engine.stop, 0.0)
            self._interrupt(record)
            return
        if not canary.ok:
            await asyncio.to_thread(candidate.engine.stop, 0.0)
            self._give_up(record, f"it failed the canary in the agent: {canary.errors[0]}")
            return

        # Taken before the call: requests go to the candidate at its start, before the registration's sync.
        switched_at = time.time()
        old = await self.agent.switch_to(candidate)
        self._standby = old
        record = self.state.save(record.model_copy(update={"outcome": "probation", "switched_at": switched_at}))
        await self._report()
        probation = self.node.update.probation_s if record.probation_s is None else record.probation_s
        failure = await self._watch(candidate, probation)

        if self._stopping.is_set():
            return  # stop() settles an update it interrupts
        if failure is None:
            self._standby = None
            await self._report()
            self.state.finish(record, "switched", f"it served through its {probation:g} s probation without a failure")
            log.info("update %s: %s passed its probation; %s retires", record.id, candidate.describe(), old.describe())
            await self.agent.retire(old)
            return
        # Back to the engine that never stopped: new requests go there at once.
        await self.agent.switch_to(old)
        self._standby = None
        await self._report()
        self._give_up(record, f"it failed within its {probation:g} s probation: {failure}")
        await self.agent.retire(candidate)

    async def _watch(self, candidate: LoadedArtifact, probation_s: float) -> str | None:
        """The new engine's first failure within the window, or None."""
        engine = candidate.engine
        failures = engine.failures
        deadline = time.monotonic() + probation_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            if engine.failures > failures:
                return f"{engine.failures - failures} failed step(s), the last: {engine.last_failure}"
            if not engine.running:
                return "its engine thread stopped"
            try:
                await asyncio.wait_for(self._stopping.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
        return None

    def _give_up(self, record: UpdateRecord, reason: str) -> None:
        with self.store.locked():
            self.store.set_links(record.rollback_links())
        self.state.finish(record, "rolled_back", reason)
        log.warning("update %s rolled back to %s: %s", record.id, self.agent.serving.describe(), reason)

    # --- shutdown ----------------------------------------------------------------------------

    async def stop(self) -> None:
        self._stopping.set()
        for task in list(self._tasks):
            await task
        standby, self._standby = self._standby, None
        if standby is not None:
            record = self.state.read().last
            if record is not None and record.outcome == "probation":
                self._interrupt(record)
            await asyncio.gather(self.agent.retire(standby), self.agent.stop())
        else:
            await self.agent.stop()
        self.layout.runtime_file.unlink(missing_ok=True)

    def _interrupt(self, record: UpdateRecord) -> None:
        # Nothing unconfirmed is kept: the next start serves what served before this update.
        with self.store.locked():
            self.store.set_links(record.rollback_links())
        self.state.finish(
            record,
            "interrupted",
            "the agent stopped before this update finished its probation; the node went back "
            "to the previous artifact: run the update again",
        )
