"""Hot keys and prefixes: a Space-Saving sketch over a sliding window that keeps hashes, not keys."""

from __future__ import annotations

import tracemalloc

from hybrid.router.policy.hotness import HotnessTracker, hotness_key
from tests.hybrid.router.policy.fakes import request


def test_hotness_window_slides_and_memory_stays_bounded(clock):
    tracker = HotnessTracker(window_s=60, buckets=6, capacity=16, hot_count=3, clock=clock)
    for _ in range(3):
        tracker.record("k")
    assert tracker.is_hot("k")
    clock.now += 61
    assert not tracker.is_hot("k") and tracker.count("k") == 0
    for i in range(10_000):
        tracker.record(f"cold-{i}")
    assert tracker.tracked_keys() <= 16
    assert not tracker.is_hot("cold-9999"), "a key that inherited a slot's count must not look hot"
    clock.now += 61
    # Space-Saving keeps every key more frequent than 1/capacity of the traffic.
    for i in range(400):
        tracker.record(f"noise-{i}")
        if i % 8 == 0:
            tracker.record("heavy")
    assert tracker.is_hot("heavy"), "a heavy hitter must survive a flood of one-off keys"
    assert tracker.tracked_keys() <= 16


def test_a_huge_key_costs_the_tracker_a_few_bytes_not_its_size(clock):
    tracker = HotnessTracker(clock=clock)
    tracemalloc.start()
    try:
        huge = "x" * 4_000_000
        for _ in range(3):
            tracker.record(huge)
        assert tracker.is_hot(huge)
        del huge
        retained, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert retained < 10_000, f"the tracker kept {retained} bytes for one key"


def test_requests_are_alike_by_affinity_key_else_by_the_prompts_start():
    assert hotness_key(request(affinity_key="user-42", prompt="a")) == hotness_key(
        request(affinity_key="user-42", prompt="b")
    )
    shared = "Summarize the quarterly report for ACME " * 4
    assert hotness_key(request(prompt=shared + "in English")) == hotness_key(request(prompt=shared + "in French"))
    assert hotness_key(request(prompt="Summarize this")) != hotness_key(request(prompt="Translate this"))
