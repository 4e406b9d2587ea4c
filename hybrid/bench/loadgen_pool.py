"""The open-loop load generator spread over several processes, its records merged into one run.

One Python process cannot offer much more than one or two thousand streamed gRPC requests a second:
past that, its own event loop sends late and the figures measure the generator, not the target.
``run_pool(target, arrivals, processes)`` deals the arrivals out by index in turn (the first to
process 0, the second to process 1, ...), so every share is itself an open-loop stream over the whole
run at 1/P of the rate. Each share goes to a spawned child running ``run_open_loop`` with its own gRPC
channels. Every child says when it is ready; then the parent hands all of them one start a moment
ahead on the wall clock, which each turns into its own monotonic clock, so every time in every record
counts from that one start.

Children send their records back in batches as requests end. The invariant of the single generator
holds: every arrival ends in exactly one record. A child that dies loses only what it had not yet
sent back, and each of those arrivals becomes a CLIENT_ERROR record saying the generator process died.

With one process nothing is spawned: ``run_open_loop`` runs here, as it always has.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import connection

from hybrid.bench.loadgen import Record, RunResult, run_open_loop, unfinished_record
from hybrid.bench.processes import SPAWN, ignore_interrupts
from hybrid.bench.workload import Arrival

# From the last child being ready to the shared start: time for every child to hear it and connect.
START_MARGIN_S = 0.5
READY_TIMEOUT_S = 120.0
# How often a child sends back the records of the requests that ended since.
REPORT_EVERY_S = 0.2
_STOP_GRACE_S = 5.0


@dataclass
class PoolProgress:
    """Counts over all processes so far, and the children's process ids."""

    sent: int = 0
    done: int = 0
    failed: int = 0
    pids: list[int] = field(default_factory=list)


def _child_main(target: str, share: list[Arrival], name: str, chat: bool, channels: int, pipe) -> None:
    ignore_interrupts()  # Ctrl-C is the parent's to handle: it stops the children
    pipe.send(("ready",))
    message = pipe.recv()
    if message[0] != "start":
        return
    asyncio.run(_child_run(target, share, name, chat, channels, message[1], pipe))


async def _child_run(
    target: str, share: list[Arrival], name: str, chat: bool, channels: int, start_at: float, pipe
) -> None:
    ended: list[Record] = []
    reported: set[str] = set()
    sent = 0

    def count_sent(_: Arrival) -> None:
        nonlocal sent
        sent += 1

    def report() -> None:
        batch = ended[:]
        ended.clear()
        reported.update(r.request_id for r in batch)
        pipe.send(("records", sent, batch))

    async def report_every_while() -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            report()

    reporter = asyncio.create_task(report_every_while())
    try:
        result = await run_open_loop(
            target, share, name, chat, on_sent=count_sent, on_done=ended.append, start_at=start_at, channels=channels
        )
    finally:
        reporter.cancel()
    rest = [r for r in result.records if r.request_id not in reported]
    pipe.send(("done", sent, rest, result.duration_s, result.generator_cpu_s))


class _Child:
    """One generator process, its share of the arrivals and the records it has sent back."""

    def __init__(self, index: int, share: list[Arrival], target: str, name: str, chat: bool, channels: int):
        self.index = index
        self.share = share
        self.records: dict[str, Record] = {}
        self.sent = 0
        self.failed = 0
        self.duration_s = 0.0
        self.cpu_s = 0.0
        self.open = True  # its pipe can still be read
        self.ready = False
        self.pipe, child_end = SPAWN.Pipe()
        self.process = SPAWN.Process(
            target=_child_main,
            args=(target, share, name, chat, channels, child_end),
            name=f"loadgen-{index}",
            daemon=True,
        )
        self.process.start()
        child_end.close()

    def receive(self) -> None:
        """Takes one message from the child; a pipe that ends (or breaks mid-message) closes it."""
        try:
            message = self.pipe.recv()
        except Exception:  # EOF, or a message cut short by the child's death
            self.open = False
            return
        kind = message[0]
        if kind == "ready":
            self.ready = True
        elif kind in ("records", "done"):
            self.sent = message[1]
            for record in message[2]:
                self.records[record.request_id] = record
                self.failed += not record.ok
            if kind == "done":
                self.duration_s, self.cpu_s = message[3], message[4]

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(_STOP_GRACE_S)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(_STOP_GRACE_S)
        self.pipe.close()

    def lost_detail(self) -> str:
        code = self.process.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        if not self.ready:
            how = f"never became ready ({how})"
        return (
            f"the load generator process {self.index} (pid {self.process.pid}) died: it {how} "
            "before this request's record came back"
        )


def run_pool(
    target: str,
    arrivals: list[Arrival],
    processes: int = 1,
    name: str = "",
    chat: bool = True,
    channels: int = 1,
    on_progress: Callable[[PoolProgress], None] | None = None,
) -> RunResult:
    """Sends every arrival at its time from ``processes`` processes with ``channels`` gRPC channels each; returns
    one record per arrival, sorted by scheduled time, every time counted from the shared start."""
    if channels < 1:
        raise ValueError(f"channels is {channels}: send over at least 1 gRPC channel per process")
    if processes <= 1:
        return _run_here(target, arrivals, name, chat, channels, on_progress)
    ordered = sorted(arrivals, key=lambda a: a.at_s)
    children = [_Child(i, ordered[i::processes], target, name, chat, channels) for i in range(processes)]
    start_at = time.time() + START_MARGIN_S
    try:
        _wait_until_ready(children)
        start_at = time.time() + START_MARGIN_S
        for child in children:
            if child.ready and child.open:
                child.pipe.send(("start", start_at))
        _collect(children, on_progress)
    finally:
        for child in children:
            child.stop()
    return _merged(children, target, name, start_at)


def _run_here(target, arrivals, name, chat, channels, on_progress) -> RunResult:
    progress = PoolProgress(pids=[os.getpid()])

    def count_sent(_: Arrival) -> None:
        progress.sent += 1
        on_progress(progress)

    def count_done(record: Record) -> None:
        progress.done += 1
        progress.failed += not record.ok
        on_progress(progress)

    callbacks = dict(on_sent=count_sent, on_done=count_done) if on_progress is not None else {}
    return asyncio.run(run_open_loop(target, arrivals, name, chat, channels=channels, **callbacks))


def _wait_until_ready(children: list[_Child]) -> None:
    """Until every child is ready or gone; one that is neither in time is stopped, its share lost to it."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = [c for c in children if c.open]
    while waiting and time.monotonic() < deadline:
        for pipe in connection.wait([c.pipe for c in waiting], timeout=deadline - time.monotonic()):
            next(c for c in waiting if c.pipe is pipe).receive()
        waiting = [c for c in waiting if c.open and not c.ready]
    for child in waiting:
        child.stop()
        child.open = False


def _collect(children: list[_Child], on_progress: Callable[[PoolProgress], None] | None) -> None:
    """Reads every child's records until each has finished or died."""
    progress = PoolProgress(pids=[c.process.pid for c in children])
    while True:
        reading = [c for c in children if c.open]
        if not reading:
            return
        for pipe in connection.wait([c.pipe for c in reading], timeout=REPORT_EVERY_S):
            next(c for c in reading if c.pipe is pipe).receive()
        if on_progress is not None:
            progress.sent = sum(c.sent for c in children)
            progress.done = sum(len(c.records) for c in children)
            progress.failed = sum(c.failed for c in children)
            on_progress(progress)


def _merged(children: list[_Child], target: str, name: str, start_at: float) -> RunResult:
    """One run of all the children's records, and a CLIENT_ERROR record for every arrival a dead child took along."""
    now_s = max(0.0, time.time() - start_at)
    records: list[Record] = []
    for child in children:
        for arrival in child.share:
            record = child.records.get(arrival.request_id)
            records.append(record if record is not None else unfinished_record(arrival, now_s, child.lost_detail()))
    records.sort(key=lambda r: (r.scheduled_s, r.request_id))
    duration_s = max([0.0, *(c.duration_s for c in children), *(r.end_s for r in records)])
    return RunResult(
        name=name or target,
        target=target,
        records=records,
        started_at=start_at,
        duration_s=duration_s,
        generator_cpu_s=sum(c.cpu_s for c in children),
    )
