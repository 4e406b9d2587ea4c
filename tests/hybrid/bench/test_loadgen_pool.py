"""The load generator over several processes, against a scripted replica on loopback (real gRPC, no model)."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time

import pytest

from hybrid.bench.loadgen import CLIENT_ERROR
from hybrid.bench.loadgen_pool import PoolProgress, run_pool
from hybrid.bench.workload import Arrival

from .conftest import ScriptedReplica


class WatchedReplica(ScriptedReplica):
    """Notes, per request, when (wall clock) it arrived and over which connection."""

    def __init__(self):
        super().__init__("edge-a", "edge")
        self.arrived_at: dict[str, float] = {}
        self.peers: set[str] = set()

    async def generate(self, message, context):
        self.arrived_at.setdefault(message.request_id, time.time())
        self.peers.add(context.peer())
        async for chunk in super().generate(message, context):
            yield chunk


@pytest.fixture
async def replica():
    replica = WatchedReplica()
    await replica.shell.start()
    yield replica
    await replica.shell.stop(0)


def arrivals(count: int, every_s: float, prompt: str = "hello") -> list[Arrival]:
    return [Arrival(i * every_s, f"r{i:03d}", "INTERACTIVE", "k", prompt, 2, 5.0, "steady") for i in range(count)]


async def test_two_processes_send_every_arrival_once_on_one_clock(replica):
    schedule = arrivals(60, 0.01)
    seen: list[PoolProgress] = []
    result = await asyncio.to_thread(run_pool, replica.shell.address, schedule, 2, "pool", on_progress=seen.append)

    assert len(result.records) == len(schedule)
    assert {r.request_id for r in result.records} == {a.request_id for a in schedule}
    assert all(r.ok for r in result.records), {r.detail for r in result.records if not r.ok}
    # Two children, neither of them this process, each over a connection of its own.
    pids = seen[-1].pids
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert len(replica.peers) == 2
    assert seen[-1].done == seen[-1].sent == len(schedule)
    assert 0 < result.generator_cpu_s < 2 * result.duration_s  # both children's, from the start on
    # One clock: merged in scheduled order, each sent at its time from the shared start ...
    scheduled = [r.scheduled_s for r in result.records]
    assert scheduled == sorted(scheduled)
    for record in result.records:
        assert 0 <= record.sent_s - record.scheduled_s < 1.0, "sent before its time, or long after"
        assert record.sent_s <= record.end_s
    # ... and that start is the one the wall clock saw: the replica got each request after its time, and each
    # process's requests (dealt out in turn: even and odd) typically within a few ms of it. Medians, because on
    # a busy machine one request may wait a scheduler slice; a process started off the shared clock shifts all.
    lags = [
        replica.arrived_at[r.request_id] - (result.started_at + r.scheduled_s)
        for r in sorted(result.records, key=lambda r: r.request_id)
    ]
    assert min(lags) > -0.01, "a request reached the replica before its time on the shared clock"
    for share in (lags[0::2], lags[1::2]):
        assert statistics.median(share) < 0.1, share


async def test_a_generator_process_that_dies_leaves_a_client_error_record_per_lost_arrival(replica):
    schedule = arrivals(40, 0.025, prompt="sleep:0.2")
    killed: list[int] = []

    def kill_the_second_child(progress: PoolProgress) -> None:
        if not killed and progress.done >= 6:
            killed.append(progress.pids[1])
            os.kill(progress.pids[1], signal.SIGKILL)

    result = await asyncio.to_thread(run_pool, replica.shell.address, schedule, 2, on_progress=kill_the_second_child)

    assert killed
    assert len(result.records) == len(schedule)
    assert {r.request_id for r in result.records} == {a.request_id for a in schedule}
    by_id = {r.request_id: r for r in result.records}
    first_share, second_share = schedule[0::2], schedule[1::2]
    assert all(by_id[a.request_id].ok for a in first_share)
    lost = [by_id[a.request_id] for a in second_share if not by_id[a.request_id].ok]
    assert lost, "the killed process had arrivals still to send"
    for record in lost:
        assert record.status == CLIENT_ERROR
        assert "load generator process 1" in record.detail and "died" in record.detail
        assert f"signal {signal.SIGKILL.value}" in record.detail


async def test_ctrl_c_in_the_parent_stops_the_children(replica):
    pids: list[int] = []

    def interrupt(progress: PoolProgress) -> None:
        pids.extend(progress.pids)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await asyncio.to_thread(run_pool, replica.shell.address, arrivals(200, 0.05), 2, on_progress=interrupt)
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_one_process_runs_here_and_spreads_its_requests_over_its_channels(replica):
    seen: list[PoolProgress] = []
    result = await asyncio.to_thread(
        run_pool, replica.shell.address, arrivals(30, 0.005), 1, channels=3, on_progress=seen.append
    )
    assert [r.request_id for r in result.records] == [a.request_id for a in arrivals(30, 0.005)]
    assert all(r.ok for r in result.records)
    assert seen[-1].pids == [os.getpid()]
    assert result.generator_cpu_s > 0
    assert len(replica.peers) == 3


@pytest.mark.parametrize("processes", [1, 2])
async def test_the_overload_bench_runs_its_schedule_with_progress_bars(replica, capsys, processes):
    from hybrid.bench.overload import run_with_progress

    schedule = arrivals(20, 0.01)
    result = await asyncio.to_thread(
        run_with_progress, replica.shell.address, schedule, "router", True, True, processes
    )
    assert result.name == "router"
    assert sorted(r.request_id for r in result.records) == [a.request_id for a in schedule]
    assert all(r.ok for r in result.records)
    assert len(replica.peers) == processes
    assert "router: answered" in capsys.readouterr().err
