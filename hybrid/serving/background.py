"""An asyncio event loop on a thread of its own: servers run beside other work (tests, benchmarks, `hybrid up`)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from typing import Any

from hybrid.engine import gc_pauses


class BackgroundLoop:
    def __init__(self, name: str):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, Any]):
        """Runs the coroutine on the loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def start_server(self, server_class, config):
        """Builds ``server_class(config)`` inside the loop (grpc.aio servers belong to the loop they are made
        on) and awaits its ``start``; the loop closes again when that fails."""

        async def started():
            server = server_class(config)
            await server.start()
            return server

        try:
            return self.call(started())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


async def serve_until_signalled(server, freeze_start_heap: bool = False) -> None:
    """Starts ``server``, then drains and stops it on SIGINT or SIGTERM.

    ``freeze_start_heap``: the process is the server's own, so what its start made can be frozen out of the
    garbage collector's walks (``gc_pauses.freeze_start_heap``), before any request is handled."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Before start: a signal that comes right after the "ready" line must stop it cleanly, not kill it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    if freeze_start_heap:  # no await in between: no request has run on this loop yet
        gc_pauses.freeze_start_heap()
    await stop.wait()
    await server.stop()
