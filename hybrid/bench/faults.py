"""Fault runs: a steady load through a real router while one replica, discovery or the router fails.

Every part is a process of its own on loopback: the router (static discovery), two synthetic replicas
of one tier (``hybrid.bench.synthetic``: the real service and server shell, answers at a fixed pace),
and this process, which sends an open-loop load through the project's async client and watches the
router's replica list. A scenario strikes at ``fault_at_s``, repairs at ``repair_at_s`` where there is
something to repair, and the run ends at ``seconds``. Each request ends in exactly one ``Outcome``.

What a run measures, per scenario:

* streams hung: answers that ended without a status of their own, at their deadline;
* requests lost, with and without a first token (a request without one can always be retried);
* time to detect: from the fault until the router stops sending to the replica (ejected or gone);
* time to return: from the replica serving again until the router sends it an answer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from hybrid.bench.processes import ServerProcess
from hybrid.bench.synthetic import SyntheticReplica, SyntheticReplicaConfig
from hybrid.client import AsyncHybridClient, RequestFailed
from hybrid.discovery import StaticFileRegistry
from hybrid.router.server import Router, RouterConfig
from hybrid.v1 import router_admin_pb2 as admin_pb
from hybrid.v1 import router_admin_pb2_grpc as admin_grpc

VICTIM = "replica-b"
# A server other than a synthetic replica for the victim (an edge agent, say): given the discovery spec, its
# replica id and its port, the server class and config that ``ServerProcess`` runs.
VictimFactory = Callable[[str, str, int], tuple[type, Any]]


@dataclass
class Outcome:
    """One request of the load, from the client's side; times are seconds since the run began."""

    sent: float
    ended: float
    code: str  # "OK", or the gRPC status name it failed with
    first_token: float | None = None
    replica: str = ""

    @property
    def lost(self) -> bool:
        return self.code != "OK"


@dataclass
class FaultResult:
    scenario: str
    outcomes: list[Outcome]
    deadline_s: float
    fault_at_s: float
    detect_s: float | None = None
    return_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def hung(self) -> int:
        """Answers that ended at their deadline, without a status of their own."""
        return sum(1 for o in self.outcomes if o.code == "DEADLINE_EXCEEDED")

    @property
    def lost_without_first_token(self) -> int:
        return sum(1 for o in self.outcomes if o.lost and o.first_token is None)

    @property
    def lost_with_first_token(self) -> int:
        return sum(1 for o in self.outcomes if o.lost and o.first_token is not None)

    def row(self) -> str:
        def seconds(value: float | None) -> str:
            return "—" if value is None else f"{value:.2f} s"

        return (
            f"| {self.scenario} | {len(self.outcomes)} | {self.hung} | {self.lost_without_first_token} | "
            f"{self.lost_with_first_token} | {seconds(self.detect_s)} | {seconds(self.return_s)} |"
        )


TABLE_HEADER = (
    "| fault | requests | hung to their deadline | lost without a first token | lost mid-answer | "
    "out of rotation after | back in rotation after |\n|---|---:|---:|---:|---:|---:|---:|"
)


@dataclass
class FaultRunConfig:
    rate: float = 20.0
    seconds: float = 12.0
    fault_at_s: float = 3.0
    repair_at_s: float = 6.0
    deadline_s: float = 5.0
    max_new_tokens: int = 16
    token_ms: float = 20.0
    poll_interval_s: float = 0.25


class FaultRun:
    """The stack of one scenario: a router and two replicas, started fresh, stopped at the end."""

    def __init__(self, config: FaultRunConfig, folder: Path, victim: VictimFactory | None = None):
        self.config = config
        self.victim = victim
        self.discovery_file = folder / "discovery.yaml"
        self.registry = StaticFileRegistry(self.discovery_file)
        self.replicas: dict[str, ServerProcess] = {}
        self.router: ServerProcess | None = None
        self.router_port = 0
        self.began = time.monotonic()
        self.victim_serving_since: float | None = None

    def now(self) -> float:
        return time.monotonic() - self.began

    def replica_config(self, replica_id: str, port: int = 0) -> SyntheticReplicaConfig:
        return SyntheticReplicaConfig(
            replica_id=replica_id, port=port, token_ms=self.config.token_ms, discovery=f"static:{self.discovery_file}"
        )

    def start_replica(self, replica_id: str, port: int = 0) -> ServerProcess:
        if replica_id == VICTIM and self.victim is not None:
            server_class, config = self.victim(f"static:{self.discovery_file}", replica_id, port)
        else:
            server_class, config = SyntheticReplica, self.replica_config(replica_id, port)
        process = ServerProcess(server_class, config, replica_id, 300)
        self.replicas[replica_id] = process
        return process

    def start_router(self) -> None:
        config = RouterConfig(
            port=self.router_port,
            discovery=f"static:{self.discovery_file}",
            poll_interval_s=self.config.poll_interval_s,
            drain_grace_s=self.config.deadline_s,
        )
        self.router = ServerProcess(Router, config, "router", 60)
        self.router_port = int(self.router.address.rsplit(":", 1)[1])

    def victim_port(self) -> int:
        return int(self.replicas[VICTIM].address.rsplit(":", 1)[1])

    def signal_victim(self, sig: signal.Signals) -> None:
        os.kill(self.replicas[VICTIM].pid, sig)

    def stop(self) -> None:
        for process in [*self.replicas.values(), *([self.router] if self.router else [])]:
            if process.pid is not None:
                try:
                    os.kill(process.pid, signal.SIGCONT)  # a frozen one cannot stop itself
                except ProcessLookupError:
                    pass
            process.stop(2)


Scenario = Callable[[FaultRun], Awaitable[None]]


async def _request(run: FaultRun, client: AsyncHybridClient, index: int, outcomes: list[Outcome]) -> None:
    sent = run.now()
    first_token, replica, code = None, "", "OK"
    try:
        stream = client.stream(
            prompt=f"request {index}", max_new_tokens=run.config.max_new_tokens, timeout_s=run.config.deadline_s
        )
        async for chunk in stream:
            if first_token is None:
                first_token, replica = run.now(), chunk.served_by.replica_id
    except RequestFailed as failure:
        code = failure.code.name
    outcomes.append(Outcome(sent, run.now(), code, first_token, replica))


async def _watch(run: FaultRun, result: FaultResult, stop: asyncio.Event) -> None:
    """Polls the router's replica list: when did it stop listing the victim as usable."""
    async with AsyncHybridClient(f"127.0.0.1:{run.router_port}") as client:
        admin = admin_grpc.RouterAdminStub(client.channel)
        while not stop.is_set():
            try:
                reply = await admin.ListReplicas(admin_pb.ListReplicasRequest(), timeout=1)
                usable = any(r.replica_id == VICTIM and not r.ejected for r in reply.replicas)
                if result.detect_s is None and not usable and run.now() >= result.fault_at_s:
                    result.detect_s = run.now() - result.fault_at_s
            except grpc.RpcError:  # the router itself is down in some scenarios; keep watching
                pass
            await asyncio.sleep(0.05)


async def run_scenario(
    name: str, scenario: Scenario, config: FaultRunConfig | None = None, victim: VictimFactory | None = None
) -> FaultResult:
    """Runs one scenario on a fresh stack and measures it."""
    config = config or FaultRunConfig()
    with tempfile.TemporaryDirectory(prefix="hybrid-faults-") as folder:
        run = FaultRun(config, Path(folder), victim)
        try:
            await asyncio.to_thread(run.start_replica, "replica-a")
            await asyncio.to_thread(run.start_replica, VICTIM)
            await asyncio.to_thread(run.start_router)
            run.began = time.monotonic()
            result = FaultResult(name, [], config.deadline_s, config.fault_at_s)
            await _drive(run, scenario, result)
        finally:
            await asyncio.to_thread(run.stop)
    if run.victim_serving_since is not None:
        back = [o.first_token for o in result.outcomes if o.replica == VICTIM and o.sent >= run.victim_serving_since]
        result.return_s = min(back) - run.victim_serving_since if back else None
    return result


async def _drive(run: FaultRun, scenario: Scenario, result: FaultResult) -> None:
    config = run.config
    stop_watching = asyncio.Event()
    watcher = asyncio.create_task(_watch(run, result, stop_watching))
    fault = asyncio.create_task(_strike(run, scenario))
    requests: list[asyncio.Task] = []
    async with AsyncHybridClient(f"127.0.0.1:{run.router_port}") as client:
        interval, index = 1 / config.rate, 0
        while run.now() < config.seconds:
            requests.append(asyncio.create_task(_request(run, client, index, result.outcomes)))
            index += 1
            await asyncio.sleep(max(0.0, index * interval - run.now()))
        await asyncio.gather(*requests)
    await fault
    stop_watching.set()
    await watcher


async def _strike(run: FaultRun, scenario: Scenario) -> None:
    await asyncio.sleep(max(0.0, run.config.fault_at_s - run.now()))
    await scenario(run)


# --- the scenarios ---------------------------------------------------------------------------------


async def _until_repair(run: FaultRun) -> None:
    await asyncio.sleep(max(0.0, run.config.repair_at_s - run.now()))


async def _restart_victim(run: FaultRun, port: int) -> None:
    await asyncio.to_thread(run.start_replica, VICTIM, port)
    run.victim_serving_since = run.now()


async def replica_killed(run: FaultRun) -> None:
    port = run.victim_port()
    run.signal_victim(signal.SIGKILL)
    await _until_repair(run)
    await _restart_victim(run, port)


async def replica_frozen(run: FaultRun) -> None:
    """Frozen past a request's deadline: a hung process, which must count as failed, not as slow."""
    run.signal_victim(signal.SIGSTOP)
    await asyncio.sleep(run.config.deadline_s + 0.5)
    run.signal_victim(signal.SIGCONT)
    run.victim_serving_since = run.now()


async def replica_withdrawn(run: FaultRun) -> None:
    """Removed from discovery while it streams (what an operator's edit or Consul's deregistration does)."""
    record = run.replicas[VICTIM].record
    await asyncio.to_thread(run.registry.deregister, VICTIM)
    await _until_repair(run)
    await asyncio.to_thread(run.registry.register, record)
    run.victim_serving_since = run.now()


async def replica_drained(run: FaultRun) -> None:
    """A graceful stop (SIGTERM): it deregisters, finishes its answers and exits; then it comes back."""
    port = run.victim_port()
    await asyncio.to_thread(run.replicas[VICTIM].stop, run.config.deadline_s)
    await _until_repair(run)
    await _restart_victim(run, port)


async def discovery_file_deleted(run: FaultRun) -> None:
    """Deleted, then written back whole (as a configuration tool would), not replica by replica."""
    saved = run.discovery_file.read_bytes()
    run.discovery_file.unlink()
    await _until_repair(run)
    staged = run.discovery_file.with_suffix(".restoring")
    staged.write_bytes(saved)
    staged.replace(run.discovery_file)


async def router_restarted(run: FaultRun) -> None:
    await asyncio.to_thread(run.router.stop, run.config.deadline_s)
    await asyncio.to_thread(run.start_router)


async def router_killed(run: FaultRun) -> None:
    os.kill(run.router.pid, signal.SIGKILL)
    await asyncio.to_thread(run.start_router)


SCENARIOS: dict[str, Scenario] = {
    "replica killed (kill -9), then restarted": replica_killed,
    "replica frozen (SIGSTOP), then resumed": replica_frozen,
    "replica removed from discovery while it streams, then re-added": replica_withdrawn,
    "replica drained (SIGTERM), then restarted": replica_drained,
    "static discovery file deleted, then rewritten": discovery_file_deleted,
    "router restarted (SIGTERM)": router_restarted,
    "router killed (kill -9) and started again": router_killed,
}
