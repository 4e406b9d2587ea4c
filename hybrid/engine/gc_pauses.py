"""The cyclic garbage collector in a replica's process: the pauses it takes, and keeping the start's heap out of them.

A full collection walks every object the collector tracks and holds the interpreter while it does, so the engine's
thread and every stream of the process stop together. A replica holds 350,000-410,000 such objects from its start
(torch or ONNX Runtime, transformers, the model; Ray Serve in the cloud), and one full collection of them takes
200-400 ms on a 2-core VM: a stall every client sees. Frozen (``gc.freeze()``), those objects are left out of every
collection, and the same full collection takes under a millisecond. Objects made while serving stay collectable.
Ray Serve freezes its replicas' start heap itself (``RAY_SERVE_FREEZE_GC_ON_STARTUP``); the edge agent's commands
call ``freeze_start_heap``.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable

from prometheus_client import Histogram

log = logging.getLogger("hybrid.engine.gc")

# A collection this long is a stall worth a line in the log: a few decode steps on a GPU.
SLOW_COLLECTION_MS = 50.0

# The freeze's own collection comes before any request: it is neither a stall nor a serving pause.
_collecting_on_purpose = False


def freeze_start_heap() -> int:
    """Collects what the start left behind, then freezes the rest; returns how many objects are frozen.

    Call it once the replica has loaded and warmed up. Frozen objects are never collected: what is garbage by
    then must be collected first, which is why the collection comes before the freeze.
    """
    global _collecting_on_purpose
    _collecting_on_purpose = True
    try:
        gc.collect()
    finally:
        _collecting_on_purpose = False
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze %d objects of the replica's start out of the garbage collector's walks", frozen)
    return frozen


def thaw_for(retired: str) -> None:
    """Makes the frozen objects collectable again, so that ``retired`` (an engine this process let go, which the
    start's freeze holds) can be freed; full collections walk the whole heap again from then on."""
    if gc.get_freeze_count():
        gc.unfreeze()
        log.info("unfroze the start's heap so that %s can be collected", retired)


class _PauseWatch:
    """Times each collection through ``gc.callbacks``; observes it into the histograms it is given."""

    def __init__(self, slow_ms: float):
        self.slow_ms = slow_ms
        self.histograms: weakref.WeakSet[Histogram] = weakref.WeakSet()
        self.serving = 0  # servers of this process that are watching
        # Set when the interpreter begins to exit: its collections (modules torn down) are long and stall no one,
        # even where a server of the process was never stopped.
        self.exiting = False
        self._began: float | None = None

    def at_exit(self) -> None:
        self.exiting = True

    def __call__(self, phase: str, info: dict) -> None:
        # Collections never nest and run with the GIL held, so one start time is enough.
        if phase == "start":
            self._began = time.perf_counter()
            return
        if self._began is None:
            return
        seconds, self._began = time.perf_counter() - self._began, None
        if _collecting_on_purpose or not self.serving or self.exiting:
            return
        generation = info.get("generation", 2)
        for histogram in list(self.histograms):
            histogram.labels(str(generation)).observe(seconds)
        if seconds * 1000 >= self.slow_ms:
            log.warning(
                "a generation-%d garbage collection held this process for %.0f ms (%d objects freed, %d frozen)",
                generation,
                seconds * 1000,
                info.get("collected", 0),
                gc.get_freeze_count(),
            )


@functools.cache
def _watch() -> _PauseWatch:
    watch = _PauseWatch(SLOW_COLLECTION_MS)
    gc.callbacks.append(watch)
    # Exit marked before atexit's hooks run: those go last-registered first, so a hook registered here would come
    # after those of every library set up later (Ray's shutdown, multiprocessing's) and log their collections.
    # threading's exit hooks run before any of atexit's, and before the interpreter waits for its threads.
    threading._register_atexit(watch.at_exit)
    return watch


def watch_pauses(histogram: Histogram | None = None) -> Callable[[], None]:
    """While something in this process serves, logs every collection that takes ``SLOW_COLLECTION_MS`` or longer,
    and observes each one's duration into ``histogram`` (labelled by generation). Call it when
    serving begins, and the function it returns when serving ends: the collections of a start that loads a model,
    or of an exit, are long and harm no one. The callback is installed once per process."""
    watch = _watch()
    if histogram is not None:
        watch.histograms.add(histogram)
    watch.serving += 1
    done = False

    def stop_watching() -> None:
        nonlocal done
        if not done:
            done, watch.serving = True, watch.serving - 1
            if histogram is not None:
                watch.histograms.discard(histogram)

    return stop_watching
