"""Parts of the bench stack in processes of their own.

The load generator, the router, the baseline, the WAN proxies and every edge agent are Python
event loops; in one interpreter they would take turns on one GIL, and the generator's own clock
would slip whenever the router was busy. Each runs in a spawned process instead.

``ServerProcess(server_class, config)`` runs any server of the project's shape (built from one
config inside its event loop, ``async start()``, ``async stop()``, an ``address``, and a
``record()`` where it is a replica) in a child and waits until it serves; ``stop()`` asks it to
drain (SIGTERM) and kills it if it does not.
``ServerProcess.router_workers(config)`` runs ``hybrid router serve --workers N`` the same way: its supervisor in a
child, ready once every worker serves.
``call_in_process(function, *args)`` runs one function in a fresh child and returns its result.
A ``ServerProcess`` given ``cpus`` runs on those CPUs only, from before its server starts any thread.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any

log = logging.getLogger("hybrid.bench")

SPAWN = multiprocessing.get_context("spawn")  # fork would copy Ray's and grpc's threads half-alive


def ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group; the parent decides what stops, and in which order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _serve(server_class: type, config: Any, cpus: frozenset[int] | None, pipe) -> None:
    ignore_interrupts()
    if cpus:
        os.sched_setaffinity(0, cpus)  # every thread the server starts from here on inherits it

    async def main() -> None:
        try:
            server = server_class(config)
            await server.start()
        except BaseException as error:
            pipe.send(("error", f"{type(error).__name__}: {error}"))
            raise
        # A replica also says how discovery would list it (EdgeAgent.record), so the parent need not guess.
        record = server.record() if callable(getattr(server, "record", None)) else None
        pipe.send(("ready", (server.address, record)))
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
        await stopping.wait()
        await server.stop()

    asyncio.run(main())


def _serve_router_workers(config: Any, pipe) -> None:
    from hybrid.router.workers import serve_workers

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ready = ("ready", (f"{config.host}:{config.port}", None))
    raise SystemExit(serve_workers(config, on_ready=lambda: pipe.send(ready)))


class ServerProcess:
    """One server in a spawned child process; ``address`` is the server's, once it serves."""

    def __init__(
        self,
        server_class: type,
        config: Any,
        name: str,
        ready_timeout_s: float = 300.0,
        cpus: frozenset[int] | None = None,
    ):
        self._launch(name, _serve, (server_class, config, cpus), ready_timeout_s, daemon=True)

    @classmethod
    def router_workers(cls, config: Any, name: str = "router", ready_timeout_s: float = 300.0) -> ServerProcess:
        """The router as ``config.workers`` processes on ``config.port`` (``hybrid.router.workers``). Its supervisor
        starts children, which a daemonic process may not: it is stopped like any other, by ``stop``."""
        process = cls.__new__(cls)
        process._launch(name, _serve_router_workers, (config,), ready_timeout_s, daemon=False)
        return process

    def _launch(self, name: str, target, args: tuple, ready_timeout_s: float, daemon: bool) -> None:
        """Starts ``target(*args, pipe)`` in a child and waits for the ("ready", (address, record)) it sends."""
        self.name = name
        parent_end, child_end = SPAWN.Pipe(duplex=False)
        self._process = SPAWN.Process(target=target, args=(*args, child_end), name=name, daemon=daemon)
        self._process.start()
        child_end.close()
        try:
            if not parent_end.poll(ready_timeout_s):
                raise RuntimeError(f"{name} did not start serving within {ready_timeout_s:.0f} s")
            status, value = parent_end.recv()
        except EOFError:
            self._process.join(5)
            raise RuntimeError(f"{name} exited with code {self._process.exitcode} before serving") from None
        except BaseException:
            self.stop(0)
            raise
        if status != "ready":
            self.stop(0)
            raise RuntimeError(f"{name} failed to start: {value}")
        self.address, self.record = value

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def stop(self, grace_s: float = 30.0) -> None:
        if self._process.is_alive():
            os.kill(self._process.pid, signal.SIGTERM)
            self._process.join(grace_s)
        if self._process.is_alive():
            log.warning("%s did not stop within %.0f s; killing it", self.name, grace_s)
            self._process.kill()
            self._process.join(5)


def call_in_process(function, *args):
    """``function(*args)`` in a fresh spawned process (both picklable); returns its result or raises its error."""
    with ProcessPoolExecutor(max_workers=1, mp_context=SPAWN, initializer=ignore_interrupts) as pool:
        return pool.submit(function, *args).result()
