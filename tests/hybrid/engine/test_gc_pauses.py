"""The garbage collector in a replica's process: the start's heap frozen out of its walks, and its pauses watched."""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hybrid.engine import gc_pauses
from hybrid.engine.metrics import ReplicaMetrics


class Node:
    def __init__(self):
        self.other: Node | None = None


@pytest.fixture
def unfrozen():
    yield
    gc.unfreeze()  # the test process keeps collecting what the next tests leave behind


def test_the_start_garbage_is_collected_before_the_rest_is_frozen(unfrozen):
    garbage, kept = Node(), Node()
    garbage.other, kept.other = garbage, kept  # two cycles: one dropped, one held
    dropped = weakref.ref(garbage)
    del garbage
    frozen = gc_pauses.freeze_start_heap()
    assert dropped() is None, "a cycle left by the start was frozen for good instead of collected"
    assert frozen > 0 and gc.get_freeze_count() > 0  # frozen objects still leave when their last reference goes
    assert not any(o is kept for o in gc.get_objects()), "a live object of the start is still walked"


def test_thawing_lets_a_frozen_cycle_that_was_let_go_be_collected(unfrozen):
    held = Node()
    held.other = held
    gc_pauses.freeze_start_heap()
    released = weakref.ref(held)
    del held
    gc.collect()
    assert released() is not None, "frozen: no collection walks it"
    gc_pauses.thaw_for("a retired engine")
    gc.collect()
    assert released() is None and gc.get_freeze_count() == 0


def test_a_replica_s_metrics_count_the_process_s_collections_while_it_serves():
    metrics = ReplicaMetrics(CollectorRegistry())

    def full_collections() -> float:
        return metrics.registry.get_sample_value("hybrid_replica_gc_pause_seconds_count", {"generation": "2"}) or 0

    stop_watching = gc_pauses.watch_pauses(metrics.gc_pause_seconds)
    gc.collect()
    assert full_collections() == 1
    stop_watching()
    gc.collect()  # after this replica stopped serving, whatever else the process runs
    assert full_collections() == 1


def test_a_slow_collection_is_logged_and_the_freeze_s_own_is_not(monkeypatch, caplog, unfrozen):
    stop_watching = gc_pauses.watch_pauses()
    monkeypatch.setattr(gc_pauses._watch(), "slow_ms", 0.0)
    try:
        with caplog.at_level(logging.WARNING, logger="hybrid.engine.gc"):
            gc_pauses.freeze_start_heap()
            assert not caplog.records, "the freeze's collection, before any request, was logged as a stall"
            gc.collect()
    finally:
        stop_watching()
    assert any("generation-2 garbage collection held this process" in r.getMessage() for r in caplog.records)


def test_the_collections_of_an_exit_are_not_logged(monkeypatch, caplog):
    watch = gc_pauses._watch()
    monkeypatch.setattr(watch, "slow_ms", 0.0)
    monkeypatch.setattr(watch, "exiting", False)
    stop_watching = gc_pauses.watch_pauses()  # a server that is never stopped
    try:
        watch.at_exit()  # what runs as the interpreter begins to exit
        with caplog.at_level(logging.WARNING, logger="hybrid.engine.gc"):
            gc.collect()
    finally:
        stop_watching()
    assert not caplog.records, "a collection of the exit was logged as a stall"


_EXIT_AFTER_A_LATER_HOOK = """
import atexit, gc, logging, sys
from hybrid.engine import gc_pauses

logging.basicConfig(level=logging.WARNING)
gc_pauses.SLOW_COLLECTION_MS = 0.0
gc_pauses.watch_pauses()  # a server that is never stopped


def library_shutdown():  # registered after the watch began, so atexit runs it before any hook the watch made
    garbage = [[] for _ in range(1000)]
    for item in garbage:
        item.append(item)
    del garbage
    gc.collect()


atexit.register(library_shutdown)
gc.collect()  # while serving: this one is logged
print("exiting", file=sys.stderr, flush=True)
"""


def test_the_collections_of_exit_hooks_registered_later_are_not_logged():
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_AFTER_A_LATER_HOOK],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    serving, _, exiting = done.stderr.partition("exiting\n")
    assert "garbage collection held" in serving, "the collection made while serving was not logged"
    assert "garbage collection held" not in exiting, f"a collection of the exit was logged as a stall: {exiting}"
