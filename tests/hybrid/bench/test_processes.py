"""Bench parts in processes of their own: a server pinned to CPUs runs there, threads and all; the router runs as
several workers on one port."""

from __future__ import annotations

import asyncio
import os
import threading

import psutil
import pytest

from hybrid.bench.overload_config import OverloadConfig
from hybrid.bench.processes import ServerProcess
from hybrid.cli.bench import cpu_list
from hybrid.client import AsyncHybridClient
from hybrid.discovery import StaticFileRegistry
from hybrid.router.server import RouterConfig
from hybrid.serving.ports import free_port


class CpuReporter:
    """A server of the bench's shape whose address tells the CPUs it and a thread it started may run on."""

    def __init__(self, config: None):
        self.address = ""

    async def start(self) -> None:
        seen: list[set[int]] = []
        thread = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
        thread.start()
        thread.join()
        self.address = f"{sorted(os.sched_getaffinity(0))} {sorted(seen[0])}"

    async def stop(self) -> None:
        pass


def test_a_server_given_cpus_runs_on_them_and_so_do_the_threads_it_starts():
    one = min(os.sched_getaffinity(0))
    pinned = ServerProcess(CpuReporter, None, "pinned", 60, cpus=frozenset({one}))
    free = ServerProcess(CpuReporter, None, "free", 60)
    try:
        assert pinned.address == f"[{one}] [{one}]"
        everything = sorted(os.sched_getaffinity(0))
        assert free.address == f"{everything} {everything}"
    finally:
        pinned.stop(5)
        free.stop(5)


def test_cpu_lists_are_read_as_taskset_writes_them():
    assert cpu_list("12-15") == {12, 13, 14, 15}
    assert cpu_list("0,2,4-6") == {0, 2, 4, 5, 6}
    for wrong, says in (("a-b", "CPU numbers and ranges"), ("7-3", "backwards")):
        with pytest.raises(ValueError, match=says):
            cpu_list(wrong)


def test_edge_cpus_must_be_this_machines_and_leave_some_for_the_rest():
    usable = os.sched_getaffinity(0)
    with pytest.raises(ValueError, match="name CPUs this process may use"):
        OverloadConfig(edge_cpus=frozenset({max(usable) + 1}))
    with pytest.raises(ValueError, match="takes every CPU"):
        OverloadConfig(edge_cpus=frozenset(usable))
    if len(usable) > 1:
        assert OverloadConfig(edge_cpus=frozenset({max(usable)})).edge_cpus == {max(usable)}


async def test_the_router_runs_as_workers_on_one_port_and_stops_with_them(scripted_replicas, tmp_path):
    registry = StaticFileRegistry(tmp_path / "discovery.yaml")
    for replica in scripted_replicas:
        registry.register(replica.record())
    config = RouterConfig(
        port=free_port(), http_port=free_port(), discovery=f"static:{tmp_path / 'discovery.yaml'}", workers=2
    )
    # Started from a thread: the scripted replicas answer the workers' load polls on this event loop meanwhile.
    router = await asyncio.to_thread(ServerProcess.router_workers, config, "router (2 workers)", 120)
    try:
        assert router.address == f"{config.host}:{config.port}"
        workers = psutil.Process(router.pid).children()
        assert len(workers) == 2
        async with AsyncHybridClient(router.address, timeout_s=30) as client:
            answer = await client.complete(prompt="hi", max_new_tokens=2)
        assert answer.text == "ab"
    finally:
        await asyncio.to_thread(router.stop, 30)
    assert not router._process.is_alive() and router._process.exitcode == 0
    assert not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE for worker in workers)
