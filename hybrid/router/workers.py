"""``hybrid router serve --workers N``: N router processes on the same ports, and the parent that supervises them.

One router process is one Python interpreter, bound to one core. Each worker here is the whole router —
its own discovery source, load polling, policy, gRPC server and OpenAI front — and all of them bind the same
ports with SO_REUSEPORT, so the kernel spreads incoming connections over them (a connection, and every call
on it, stays with one worker). The parent serves no request: it spawns the workers (fork would copy grpc's
threads half-alive), restarts one that dies, serves all their metrics on ``--metrics-port`` through
prometheus_client's multiprocess mode, and on SIGINT or SIGTERM tells them to drain and waits for them.

What the workers share, and what they do not. The replicas' load reports are the truth they share: every
worker polls every replica every ``ROUTER_LOAD_POLL_S``, so all see the same queue depth and batch. The
calls in flight are each worker's own: a worker's ``CallLedger`` holds only the calls it sent. The policy
reads a replica's load as the larger of what the replica last reported and the calls the worker has open
there (``Outlook.load``); the pace it expects with one more row, the wait before a slot frees, and the
no-harm rule (``expectations.no_harm``: one more row must not push any answer in flight there past
``ROUTING_DEADLINE_HEADROOM`` of its remaining time) all follow from that load, and the no-harm rule weighs
the deadlines of the worker's own calls only. Between two polls a worker does not see the requests the
other workers sent there: each judges the room left from the last report plus its own share, so N workers
may each fill the room they see. A replica with room for R more requests can so receive up to N x R before
the next poll reports them (and never more than what the workers route between two polls): up to (N - 1) x R
beyond its room. Meanwhile the pace each worker predicts is that of a smaller batch than the replica runs. Once a poll reports
the other workers' calls they count as load, which slows the pace predicted for everyone's calls, but their
own deadlines are never weighed by another worker. A replica that is full answers RESOURCE_EXHAUSTED, and
the worker sends the request elsewhere before its first token.

The status page (``/status``, ``/status.json``) is served by whichever worker a connection reaches: the
replicas' states read the same from any, the figures of calls are that worker's share (``hybrid.router.status``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection, wait

from prometheus_client import CollectorRegistry, multiprocess

from hybrid.router.server import Router, RouterConfig, run_event_loop
from hybrid.serving.ports import start_metrics_server

log = logging.getLogger("hybrid.router")

_SPAWN = multiprocessing.get_context("spawn")
# A worker has this long to serve after it starts: discovery's first answer, the first load poll, binding.
READY_TIMEOUT_S = 120.0
# Beyond the drain grace, what a worker gets to stop before it is killed.
STOP_MARGIN_S = 5.0
# More restarts than this within the window is a crash loop (a port taken, a bad discovery): give up.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


def check_shareable(config: RouterConfig) -> None:
    """Port 0 picks a different free port in each process: workers could not share it."""
    for flag, port in (("--port", config.port), ("--http-port", config.http_port)):
        if port == 0:
            raise ValueError(f"{flag} 0 cannot be shared by {config.workers} workers: give a fixed port")


def _worker_main(config: RouterConfig, ready: Connection, log_level: int, parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when the workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(name)s [worker {os.getpid()}] %(message)s")
    run_event_loop(_serve_worker(config, ready, parent_pid))


async def _serve_worker(config: RouterConfig, ready: Connection, parent_pid: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    router = Router(config)
    await router.start()
    ready.send(router.address)
    ready.close()
    # A parent killed outright sends no SIGTERM: a worker left behind stops on its own.
    while not stop.is_set() and os.getppid() == parent_pid:
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            pass
    await router.stop()


class Supervisor:
    """Starts the workers, restarts those that die, and stops them all on SIGINT or SIGTERM."""

    def __init__(self, config: RouterConfig, metrics_dir: str):
        self.config = config
        # The parent alone serves the metrics port, from every worker's files.
        self.worker_config = config.model_copy(update={"metrics_port": None})
        self.metrics_dir = metrics_dir
        self.workers: list[multiprocessing.Process] = []
        self.stopping = False
        self.died = 0
        self.killed = 0
        self._restarts: deque[float] = deque()
        # The ready pipes of restarted workers not serving yet.
        self._starting: dict[Connection, multiprocessing.Process] = {}

    def _spawn(self, index: int) -> tuple[multiprocessing.Process, Connection]:
        receiving, sending = _SPAWN.Pipe(duplex=False)
        args = (self.worker_config, sending, logging.getLogger().level, os.getpid())
        process = _SPAWN.Process(target=_worker_main, args=args, name=f"router-worker-{index}")
        process.start()
        sending.close()
        return process, receiving

    def _await_ready(self, process: multiprocessing.Process, pipe: Connection) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stopping and not pipe.poll(0.2):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{process.name} did not serve within {READY_TIMEOUT_S:.0f} s")
        if self.stopping:
            return
        try:
            pipe.recv()
        except EOFError:
            process.join(5)
            raise RuntimeError(f"{process.name} exited with code {process.exitcode} before serving") from None
        finally:
            pipe.close()

    def start(self) -> None:
        spawned = [self._spawn(index) for index in range(self.config.workers)]
        self.workers = [process for process, _ in spawned]
        for process, pipe in spawned:
            self._await_ready(process, pipe)

    def _restart_dead(self) -> None:
        for index, process in enumerate(self.workers):
            if process.is_alive() or self.stopping:
                continue
            self.died += 1
            multiprocess.mark_process_dead(process.pid, self.metrics_dir)
            now = time.monotonic()
            self._restarts.append(now)
            while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
                self._restarts.popleft()
            if len(self._restarts) > MAX_RESTARTS:
                raise RuntimeError(f"workers died {len(self._restarts)} times within {RESTART_WINDOW_S:.0f} s")
            replacement, pipe = self._spawn(index)
            # Not waited for here: the others go on being watched while it starts.
            self._starting[pipe] = replacement
            self.workers[index] = replacement
            log.error(
                "%s (pid %d) exited with code %s on its own; restarted as pid %d",
                process.name,
                process.pid,
                process.exitcode,
                replacement.pid,
            )

    def supervise(self) -> None:
        """Until SIGINT or SIGTERM: restarts each worker that dies."""
        while not self.stopping:
            ready = wait([*self._starting, *(process.sentinel for process in self.workers)], timeout=0.5)
            for pipe in [p for p in ready if p in self._starting]:
                process = self._starting.pop(pipe)
                try:
                    pipe.recv()
                    log.info("%s (pid %d) serves again", process.name, process.pid)
                except EOFError:
                    pass  # it died starting: its sentinel says so
                pipe.close()
            self._restart_dead()

    def stop(self) -> None:
        """SIGTERM to every worker (each drains as one router does), then kills those still there after the grace."""
        self.stopping = True
        for process in self.workers:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.drain_grace_s + STOP_MARGIN_S
        for process in self.workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("%s (pid %d) did not stop in time; killing it", process.name, process.pid)
                self.killed += 1
                process.kill()
                process.join(5)


def serve_workers(config: RouterConfig, on_ready: Callable[[], None] | None = None) -> int:
    """Runs ``config.workers`` routers until SIGINT or SIGTERM; ``on_ready`` is called once every worker serves.
    Returns 1 where a worker died on its own or had to be killed, else 0."""
    check_shareable(config)
    metrics_dir = tempfile.mkdtemp(prefix="hybrid-router-metrics-")
    # Read by prometheus_client as each spawned worker imports it: their metrics go to files in this folder.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    supervisor = Supervisor(config, metrics_dir)

    def on_signal(signum: int, frame: object) -> None:
        supervisor.stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    metrics_server = None
    try:
        if config.metrics_port is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=metrics_dir)
            metrics_server = start_metrics_server(config.metrics_port, config.metrics_host, registry)
        supervisor.start()
        if not supervisor.stopping:
            if on_ready is not None:
                on_ready()
            metrics = f"; metrics on {config.metrics_host}:{metrics_server.server_port}" if metrics_server else ""
            log.info(
                "router ready on %s:%d with %d workers (pids %s)%s",
                config.host,
                config.port,
                config.workers,
                ", ".join(str(p.pid) for p in supervisor.workers),
                metrics,
            )
        supervisor.supervise()
    except RuntimeError as error:
        log.error("%s; stopping every worker", error)
        supervisor.died += 1
    finally:
        supervisor.stop()
        if metrics_server is not None:
            metrics_server.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("router stopped (%d workers)", config.workers)
    return 1 if supervisor.died or supervisor.killed else 0
