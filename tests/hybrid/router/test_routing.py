"""The routing table, spillover, balancing, hotness and outlier ejection, as plain objects."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from hybrid.client import build_request
from hybrid.discovery import ReplicaRecord
from hybrid.engine.pace import Pace
from hybrid.protocol import Priority, Tier, request_from_proto
from hybrid.router.routing import HotnessTracker, OutlierDetector, ReplicaState, RequestClass, RoutingPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def replica(
    rid: str, tier: str, capacity: int = 4, precision: str | None = None, rtt: float | None = None
) -> ReplicaState:
    precision = precision or ("int8-b32" if tier == "edge" else "bf16")
    record = ReplicaRecord(
        id=rid,
        address="127.0.0.1",
        port=6000,
        tier=tier,
        model="smollm2-135m",
        precision=precision,
        region="eu",
        capacity=capacity,
        cost_per_hour={"edge": 0.1, "private": 2.0, "public": 1.0}[tier],
    )
    return ReplicaState(record=record, rtt_ms=rtt, mean_request_ms=400.0)


def send(state: ReplicaState, calls: int, clock: FakeClock) -> None:
    """The router has ``calls`` more requests in flight at this replica, sent just now."""
    for _ in range(calls):
        state.begin_call(clock.now)


def request(priority: str = "interactive", deadline_s: float | None = None, **kwargs):
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    return request_from_proto(
        build_request(prompt=kwargs.pop("prompt", "hello"), priority=priority, **kwargs), deadline
    )


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def policy(clock):
    return RoutingPolicy(HotnessTracker(clock=clock), OutlierDetector(clock=clock), random.Random(1), clock)


@pytest.fixture
def fleet():
    return [replica("edge-1", "edge", rtt=5), replica("priv-1", "private", rtt=40), replica("pub-1", "public", rtt=80)]


def test_realtime_goes_to_the_nearest_tier(policy, fleet):
    decision = policy.choose(request("realtime"), fleet)
    assert decision.request_class == RequestClass.REALTIME
    assert decision.chosen.record.id == "edge-1"
    assert decision.tier_order == [Tier.EDGE, Tier.PRIVATE, Tier.PUBLIC]


def test_realtime_follows_measured_rtt_not_the_tier_name(policy, fleet):
    fleet[0].rtt_ms = 120.0  # the edge is far from this router
    decision = policy.choose(request("realtime"), fleet)
    assert decision.tier_order[0] == Tier.PRIVATE and decision.chosen.record.id == "priv-1"


def test_cold_interactive_goes_to_private_cloud(policy, fleet):
    decision = policy.choose(request("interactive"), fleet)
    assert decision.request_class == RequestClass.COLD_INTERACTIVE
    assert decision.tier_order == [Tier.PRIVATE, Tier.PUBLIC, Tier.EDGE]
    assert decision.chosen.record.id == "priv-1"


def test_batch_goes_to_public_cloud_and_never_to_the_edge(policy, fleet):
    decision = policy.choose(request("batch"), fleet)
    assert decision.tier_order == [Tier.PUBLIC, Tier.PRIVATE]
    assert decision.chosen.record.id == "pub-1"


def test_hot_keys_go_to_the_edge_first(policy, fleet):
    hot = request("interactive", affinity_key="user-42")
    for _ in range(3):
        policy.observe(hot)
    decision = policy.choose(hot, fleet)
    assert decision.request_class == RequestClass.HOT
    assert decision.tier_order == [Tier.EDGE, Tier.PRIVATE, Tier.PUBLIC]
    assert decision.chosen.record.id == "edge-1"
    # Another key stays cold.
    assert policy.choose(request("interactive", affinity_key="user-7"), fleet).chosen.record.id == "priv-1"


def test_a_repeated_prompt_prefix_is_hot_without_an_affinity_key(policy, fleet):
    for _ in range(3):
        policy.observe(request("batch", prompt="Summarize the quarterly report for ACME"))
    assert policy.classify(request("batch", prompt="Summarize the quarterly report for ACME")) == RequestClass.HOT


def test_spillover_to_the_next_tier_before_any_error(policy, clock, fleet):
    send(fleet[1], 40, clock)  # private is saturated: 10 batches ahead
    decision = policy.choose(request("interactive", deadline_s=2.0), fleet)
    assert decision.chosen.record.id == "pub-1"
    assert any("private: no room" in r and "spilling over" in r for r in decision.reasons)


def test_cold_interactive_spills_to_the_edge_last_unless_full_precision_is_required(policy, clock, fleet):
    send(fleet[1], 40, clock)
    send(fleet[2], 40, clock)
    assert policy.choose(request("interactive", deadline_s=2.0), fleet).chosen.record.id == "edge-1"
    strict = policy.choose(request("interactive", deadline_s=2.0, full_precision=True), fleet)
    assert strict.chosen is None
    assert any("min_precision FULL" in r for r in strict.reasons)


def test_min_precision_full_never_lands_on_a_quantized_replica(policy, fleet):
    for _ in range(3):
        policy.observe(request("interactive", affinity_key="k", full_precision=True))
    decision = policy.choose(request("interactive", affinity_key="k", full_precision=True), fleet)
    assert decision.request_class == RequestClass.HOT
    assert decision.chosen.record.id == "priv-1"
    realtime = policy.choose(request("realtime", full_precision=True), fleet)
    assert realtime.chosen.full_precision


def test_realtime_skips_a_near_tier_whose_first_token_would_be_late(policy, fleet):
    fleet[0].queue_depth = 8  # edge: two batches ahead at 400 ms each = 800 ms wait, over the 250 ms target
    decision = policy.choose(request("realtime", deadline_s=5.0), fleet)
    assert decision.chosen.record.id == "priv-1"
    # 250 ms is for nearly every request; a replica's predicted first token must be within 80% of it.
    assert any("edge: no room for a first token within 200 ms" in r for r in decision.reasons)


def test_realtime_follows_the_first_tokens_a_replica_reports(policy, fleet):
    fleet[0].recent_ttft_p90_ms = 400.0  # idle queue, but its recent first tokens took 400 ms
    assert policy.choose(request("realtime", deadline_s=5.0), fleet).chosen.record.id == "priv-1"
    fleet[0].recent_ttft_p90_ms = 60.0
    assert policy.choose(request("realtime", deadline_s=5.0), fleet).chosen.record.id == "edge-1"


def test_realtime_takes_the_soonest_first_token_when_no_tier_meets_the_target(policy, fleet):
    for replica_state in fleet:
        replica_state.recent_ttft_p90_ms = 900.0  # everywhere slow: late beats refused
    assert policy.choose(request("realtime", deadline_s=5.0), fleet).chosen.record.id == "edge-1"
    fleet[2].recent_ttft_p90_ms = 300.0  # public: 80 ms away, first tokens in 300 ms: late, but the least late
    decision = policy.choose(request("realtime", deadline_s=5.0), fleet)
    assert decision.chosen.record.id == "pub-1"
    assert any("pub-1 has the soonest expected first token (380 ms)" in r for r in decision.reasons)


def test_realtime_never_joins_a_queue_longer_than_its_deadline(policy, fleet):
    for replica_state in fleet:
        replica_state.recent_ttft_p90_ms = 900.0
    fleet[0].queue_depth = 8  # edge: 800 ms wait, past a 300 ms deadline
    decision = policy.choose(request("realtime", deadline_s=0.3), fleet)
    assert decision.chosen.record.id == "priv-1"


def test_the_realtime_target_is_the_policys_to_set(clock, fleet):
    fleet[0].recent_ttft_p90_ms = 350.0
    lenient = RoutingPolicy(HotnessTracker(clock=clock), rng=random.Random(1), clock=clock, realtime_ttft_ms=500.0)
    assert lenient.choose(request("realtime", deadline_s=5.0), fleet).chosen.record.id == "edge-1"


def test_no_room_anywhere_is_resource_exhausted_with_a_retry_hint(policy, clock, fleet):
    for r in fleet:
        send(r, 100, clock)
    decision = policy.choose(request("interactive", deadline_s=1.0), fleet)
    assert decision.chosen is None
    assert decision.retry_after_ms >= 100
    assert decision.reasons[-1] == "no tier has room: RESOURCE_EXHAUSTED"


def test_retry_excludes_the_replica_that_failed(policy):
    fleet = [replica("priv-1", "private"), replica("priv-2", "private"), replica("pub-1", "public")]
    decision = policy.choose(request("interactive"), fleet, exclude=frozenset({"priv-1"}))
    assert decision.chosen.record.id == "priv-2"
    only_public = policy.choose(request("interactive"), fleet, exclude=frozenset({"priv-1", "priv-2"}))
    assert only_public.chosen.record.id == "pub-1"


def test_two_choices_prefers_the_least_loaded_and_respects_capacity(policy, clock):
    busy, idle = replica("busy", "private", capacity=8), replica("idle", "private", capacity=8)
    send(busy, 6, clock)
    picks = Counter(policy.choose(request("interactive"), [busy, idle]).chosen.record.id for _ in range(50))
    assert picks == {"idle": 50}
    # With equal relative load, the bigger replica gets more of the traffic.
    small, big = replica("small", "private", capacity=2), replica("big", "private", capacity=16)
    picks = Counter(policy.choose(request("interactive"), [small, big]).chosen.record.id for _ in range(400))
    assert picks["big"] > picks["small"]


def test_outlier_ejection_backs_off_and_recovers(policy, clock):
    peers = [replica(f"priv-{i}", "private") for i in range(4)]
    bad = peers[0]
    detector = policy.outliers
    assert not any(detector.record_failure(bad, peers) for _ in range(4))
    assert detector.record_failure(bad, peers)  # the fifth in a row
    assert detector.ejected(bad)
    assert all(policy.choose(request("interactive"), peers).chosen is not bad for _ in range(20))
    clock.now += 31
    assert not detector.ejected(bad)
    for _ in range(5):
        detector.record_failure(bad, peers)
    assert bad.ejected_until - clock.now == pytest.approx(60)  # the second ejection lasts twice as long


def test_outlier_ejection_never_empties_more_than_half_a_tier(policy):
    peers = [replica("priv-1", "private"), replica("priv-2", "private")]
    for _ in range(5):
        policy.outliers.record_failure(peers[0], peers)
    for _ in range(10):
        policy.outliers.record_failure(peers[1], peers)
    assert policy.outliers.ejected(peers[0]) and not policy.outliers.ejected(peers[1])


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


def test_explain_reasons_name_the_class_and_the_choice(policy, fleet):
    decision = policy.choose(request("batch"), fleet)
    assert decision.reasons[0].startswith("class BATCH; tiers in order: public, private")
    assert "picked pub-1" in decision.reasons[-1]


def test_priority_enum_maps_to_the_request(policy):
    assert request("realtime").priority == Priority.REALTIME


def finished_calls(state: ReplicaState, clock: FakeClock, count: int, token_ms: float, tokens: int = 21) -> None:
    """Records ``count`` calls that ended just now, each token after the first having taken ``token_ms``."""
    for _ in range(count):
        call = state.begin_call(clock.now - 2.0)
        state.streamed(call, clock.now - (tokens - 1) * token_ms / 1000, 1)
        state.streamed(call, clock.now, tokens - 1)
        state.end_call(call, clock.now, answered=True)


def test_a_replica_with_free_slots_but_slow_tokens_is_passed_over_when_the_answer_would_be_late(policy, clock, fleet):
    hot = dict(affinity_key="user-42", deadline_s=4.0)
    for _ in range(3):
        policy.observe(request("interactive", **hot))
    finished_calls(fleet[0], clock, 5, token_ms=60.0)  # the edge: a CPU node, 60 ms a token
    long_answer = policy.choose(request("interactive", max_new_tokens=64, **hot), fleet)
    assert long_answer.request_class == RequestClass.HOT
    assert long_answer.chosen.record.id == "priv-1"  # 63 x 60 ms is past half of the 4 s deadline
    assert any("edge: no room for a finish within 2000 ms" in r for r in long_answer.reasons)
    short_answer = policy.choose(request("interactive", max_new_tokens=16, **hot), fleet)
    assert short_answer.chosen.record.id == "edge-1"


def test_a_replica_that_has_gone_quiet_is_tried_again(policy, clock, fleet):
    finished_calls(fleet[0], clock, 5, token_ms=200.0)
    assert policy.choose(request("realtime", max_new_tokens=32, deadline_s=2.0), fleet).chosen.record.id == "priv-1"
    clock.now += 60  # nothing ended there for a minute: old news is no news
    assert policy.choose(request("realtime", max_new_tokens=32, deadline_s=2.0), fleet).chosen.record.id == "edge-1"


def test_a_call_still_waiting_for_its_first_token_delays_the_next_ones_there(policy, clock, fleet):
    fleet[0].begin_call(clock.now - 0.6)  # sent 600 ms ago, nothing back yet
    assert fleet[0].predicted_ttft_ms(clock.now) == pytest.approx(5 + 600)
    assert policy.choose(request("realtime", deadline_s=5.0), fleet).chosen.record.id == "priv-1"


def test_the_calls_book_keeping_counts_only_answers_that_finished():
    state = replica("edge-1", "edge")
    answered, failed = state.begin_call(10.0), state.begin_call(10.0)
    assert state.outstanding == 2
    state.streamed(answered, 10.2, 1)
    state.streamed(answered, 11.2, 10)  # 10 tokens after the first in 1 s
    state.end_call(answered, 11.2, answered=True)
    state.end_call(failed, 11.5, answered=False)
    assert state.outstanding == 0 and not state.in_flight
    assert state.recent_token_ms.quantile(11.5, 0.9) == pytest.approx(100.0)


def test_a_replica_whose_tokens_slow_as_its_batch_fills_is_passed_over_once_it_fills(policy, clock, fleet):
    edge = fleet[0]
    edge.record.capacity = 8
    edge.pace = Pace(base_ms=10.0, per_row_ms=10.0)  # 20 ms a token alone, 90 ms in a full batch
    finished_calls(edge, clock, 5, token_ms=20.0)  # what the calls saw while it was quiet
    realtime = dict(max_new_tokens=40, deadline_s=2.0)
    assert policy.choose(request("realtime", **realtime), fleet).chosen.record.id == "edge-1"
    for _ in range(6):  # a burst arrives: nothing has ended yet, but the router's calls pile up there
        edge.begin_call(clock.now)
    assert edge.predicted_token_ms(clock.now) == pytest.approx(80.0)
    decision = policy.choose(request("realtime", **realtime), fleet)
    assert decision.chosen.record.id == "priv-1"  # 39 tokens x 80 ms is past half of the 2 s deadline
    assert any("edge: no room for a first token within 200 ms and finish within 1000 ms" in r for r in decision.reasons)
    short = policy.choose(request("realtime", max_new_tokens=4, deadline_s=2.0), fleet)
    assert short.chosen.record.id == "edge-1"  # 3 x 80 ms still fits


def test_a_request_that_would_make_an_answer_in_flight_late_goes_elsewhere(policy, clock, fleet):
    edge = fleet[0]
    edge.record.capacity = 8
    edge.pace = Pace(base_ms=10.0, per_row_ms=10.0)
    realtime = edge.begin_call(clock.now, deadline=clock.now + 2.0, max_new_tokens=31)
    edge.streamed(realtime, clock.now, 1)  # 30 tokens to go, 1 s of margin: fine at 2 or 3 rows, not at 4
    hot = dict(affinity_key="user-7", deadline_s=10.0, max_new_tokens=16)
    for _ in range(3):
        policy.observe(request("interactive", **hot))
    assert policy.choose(request("interactive", **hot), fleet).chosen.record.id == "edge-1"
    edge.begin_call(clock.now, deadline=clock.now + 10.0, max_new_tokens=16)
    decision = policy.choose(request("interactive", **hot), fleet)
    assert decision.chosen.record.id == "priv-1"  # its own answer would be in time; the REALTIME one would not
    assert any("edge: no room" in r and "best expected answers put at risk 1" in r for r in decision.reasons)
    edge.end_call(realtime, clock.now + 0.5, answered=True)
    assert policy.choose(request("interactive", **hot), fleet).chosen.record.id == "edge-1"
