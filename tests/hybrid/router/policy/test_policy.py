"""The stages composed: tier table, spillover, the REALTIME first-token pass, finish and no-harm, refusal."""

from __future__ import annotations

import random

from hybrid.engine.pace import Pace
from hybrid.protocol import Tier
from hybrid.router.ledger import OK
from hybrid.router.policy.hotness import HotnessTracker
from hybrid.router.policy.policy import RoutingPolicy
from hybrid.router.policy.tiers import RequestClass
from tests.hybrid.router.policy.fakes import begin, finished_calls, replica, request, send


def chosen(policy, fleet, *args, **kwargs) -> str | None:
    decision = policy.choose(request(*args, **kwargs), fleet)
    return decision.chosen.replica_id if decision.chosen is not None else None


def make_hot(policy, **kwargs) -> None:
    for _ in range(3):
        policy.observe(request("interactive", **kwargs))


def test_each_class_goes_to_the_first_tier_of_its_table(policy, fleet):
    realtime = policy.choose(request("realtime"), fleet)
    assert realtime.request_class == RequestClass.REALTIME and realtime.chosen.replica_id == "edge-1"
    cold = policy.choose(request("interactive"), fleet)
    assert cold.request_class == RequestClass.COLD_INTERACTIVE and cold.chosen.replica_id == "priv-1"
    batch = policy.choose(request("batch"), fleet)
    assert batch.tier_order == [Tier.PUBLIC, Tier.PRIVATE] and batch.chosen.replica_id == "pub-1"


def test_realtime_follows_measured_rtt_not_the_tier_name(policy, fleet):
    fleet[0].rtt_ms = 120.0  # the edge is far from this router
    decision = policy.choose(request("realtime"), fleet)
    assert decision.tier_order[0] == Tier.PRIVATE and decision.chosen.replica_id == "priv-1"


def test_hot_keys_go_to_the_edge_first(policy, fleet):
    make_hot(policy, affinity_key="user-42")
    decision = policy.choose(request("interactive", affinity_key="user-42"), fleet)
    assert decision.request_class == RequestClass.HOT and decision.chosen.replica_id == "edge-1"
    assert chosen(policy, fleet, "interactive", affinity_key="user-7") == "priv-1", "another key stays cold"


def test_a_repeated_prompt_prefix_is_hot_without_an_affinity_key(policy):
    for _ in range(3):
        policy.observe(request("batch", prompt="Summarize the quarterly report for ACME"))
    assert policy.classify(request("batch", prompt="Summarize the quarterly report for ACME")) == RequestClass.HOT


def test_spillover_to_the_next_tier_before_any_error(policy, ledger, clock, fleet):
    send(ledger, fleet[1], 40, clock)  # private is saturated: 10 batches ahead
    decision = policy.choose(request("interactive", deadline_s=2.0), fleet)
    assert decision.chosen.replica_id == "pub-1"
    assert any("private: no room" in r and "spilling over" in r for r in decision.reasons)


def test_cold_interactive_spills_to_the_edge_last_unless_full_precision_is_required(policy, ledger, clock, fleet):
    send(ledger, fleet[1], 40, clock)
    send(ledger, fleet[2], 40, clock)
    assert chosen(policy, fleet, "interactive", deadline_s=2.0) == "edge-1"
    strict = policy.choose(request("interactive", deadline_s=2.0, full_precision=True), fleet)
    assert strict.chosen is None and any("min_precision FULL" in r for r in strict.reasons)


def test_min_precision_full_never_lands_on_a_quantized_replica(policy, fleet):
    make_hot(policy, affinity_key="k", full_precision=True)
    decision = policy.choose(request("interactive", affinity_key="k", full_precision=True), fleet)
    assert decision.request_class == RequestClass.HOT and decision.chosen.replica_id == "priv-1"
    assert policy.choose(request("realtime", full_precision=True), fleet).chosen.full_precision


def test_realtime_skips_a_near_tier_whose_first_token_would_be_late(policy, fleet):
    fleet[0].queue_depth = 8  # edge: 500 ms of queue, over the 250 ms target
    decision = policy.choose(request("realtime", deadline_s=5.0), fleet)
    assert decision.chosen.replica_id == "priv-1"
    # 250 ms is for nearly every request; a replica's predicted first token must be within 80% of it.
    assert any("edge: no room for a first token within 200 ms" in r for r in decision.reasons)


def test_realtime_follows_the_first_tokens_a_replica_reports(policy, fleet):
    fleet[0].recent_ttft_p90_ms = 400.0  # idle queue, but its recent first tokens took 400 ms
    assert chosen(policy, fleet, "realtime", deadline_s=5.0) == "priv-1"
    fleet[0].recent_ttft_p90_ms = 60.0
    assert chosen(policy, fleet, "realtime", deadline_s=5.0) == "edge-1"


def test_realtime_takes_the_soonest_first_token_when_no_tier_meets_the_target(policy, fleet):
    for state in fleet:
        state.recent_ttft_p90_ms = 900.0  # everywhere slow: late beats refused
    assert chosen(policy, fleet, "realtime", deadline_s=5.0) == "edge-1"
    fleet[2].recent_ttft_p90_ms = 300.0  # public: 80 ms away, first tokens in 300 ms: late, but the least late
    decision = policy.choose(request("realtime", deadline_s=5.0), fleet)
    assert decision.chosen.replica_id == "pub-1"
    assert any("pub-1 has the soonest expected first token (380 ms)" in r for r in decision.reasons)


def test_realtime_never_joins_a_queue_longer_than_its_deadline(policy, fleet):
    for state in fleet:
        state.recent_ttft_p90_ms = 900.0
    fleet[0].queue_depth = 8  # edge: 500 ms wait, past a 300 ms deadline
    assert chosen(policy, fleet, "realtime", deadline_s=0.3) == "priv-1"


def test_the_realtime_target_is_the_policys_to_set(clock, fleet):
    fleet[0].recent_ttft_p90_ms = 350.0
    lenient = RoutingPolicy(HotnessTracker(clock=clock), rng=random.Random(1), clock=clock, realtime_ttft_ms=500.0)
    assert chosen(lenient, fleet, "realtime", deadline_s=5.0) == "edge-1"


def test_no_room_anywhere_is_resource_exhausted_with_a_retry_hint(policy, ledger, clock, fleet):
    for state in fleet:
        send(ledger, state, 100, clock)
    decision = policy.choose(request("interactive", deadline_s=1.0), fleet)
    assert decision.chosen is None and decision.retry_after_ms >= 100
    assert decision.reasons[-1] == "no tier has room: RESOURCE_EXHAUSTED"


def test_a_replica_that_could_start_but_not_finish_in_time_is_refused_at_once(policy, ledger, clock, fleet):
    for state in fleet:
        state.record.capacity = 8
        state.pace = Pace(base_ms=10.0, per_row_ms=10.0)  # 20 ms a token alone, 90 ms in a full batch
        send(ledger, state, 7, clock)  # a slot is free everywhere: each could start it at once
    decision = policy.choose(request("interactive", max_new_tokens=40, deadline_s=2.0), fleet)
    # 40 tokens x 90 ms is past the 2 s deadline everywhere: sending it would only hold a row until it expired.
    assert decision.chosen is None and decision.impossible_ms is None
    assert decision.retry_after_ms >= 1_500 and decision.reasons[-1] == "no tier has room: RESOURCE_EXHAUSTED"
    assert chosen(policy, fleet, "interactive", max_new_tokens=20, deadline_s=2.0) is not None  # 1.8 s fits


def test_a_deadline_no_replica_could_meet_even_idle_is_deadline_exceeded(policy, fleet):
    for state in fleet:
        state.observe_pace(Pace(base_ms=10.0, per_row_ms=10.0))
    decision = policy.choose(request("interactive", max_new_tokens=64, deadline_s=0.5), fleet)
    # 64 tokens x 20 ms is 1.28 s at best: no wait for room makes that fit in 0.5 s.
    assert decision.chosen is None and decision.impossible_ms >= 1_280
    assert "DEADLINE_EXCEEDED" in decision.reasons[-1]
    assert policy.choose(request("interactive", max_new_tokens=16, deadline_s=0.5), fleet).chosen is not None


def test_a_pace_slowed_by_a_burst_does_not_make_a_deadline_impossible(policy, fleet):
    for state in fleet:
        state.observe_pace(Pace(base_ms=1.0, per_row_ms=1.0))  # idle: 2 ms a token
        state.observe_pace(Pace(base_ms=40.0, per_row_ms=1.0))  # a burst's prefills stall every step
    decision = policy.choose(request("interactive", max_new_tokens=64, deadline_s=2.0), fleet)
    # 64 x 41 ms is past 2 s now, but 64 x 2 ms is not: full for the moment (retry), not impossible.
    assert decision.chosen is None and decision.impossible_ms is None and decision.retry_after_ms >= 100


def test_retry_excludes_the_replica_that_failed_and_ejected_ones_are_never_chosen(policy):
    fleet = [replica("priv-1", "private"), replica("priv-2", "private"), replica("pub-1", "public")]
    decision = policy.choose(request("interactive"), fleet, exclude=frozenset({"priv-1"}))
    assert decision.chosen.replica_id == "priv-2"
    only_public = policy.choose(request("interactive"), fleet, exclude=frozenset({"priv-1", "priv-2"}))
    assert only_public.chosen.replica_id == "pub-1"
    for _ in range(5):
        policy.outliers.record_failure(fleet[0], fleet)
    assert all(chosen(policy, fleet, "interactive") != "priv-1" for _ in range(20))


def test_explain_reasons_name_the_class_and_the_choice(policy, fleet):
    decision = policy.choose(request("batch"), fleet)
    assert decision.reasons[0].startswith("class BATCH; tiers in order: public, private")
    assert "power of two choices picked pub-1" in decision.reasons[-1]


def test_a_replica_with_free_slots_but_slow_tokens_is_passed_over_when_the_answer_would_be_late(
    policy, ledger, clock, fleet
):
    make_hot(policy, affinity_key="user-42", deadline_s=4.0)
    finished_calls(ledger, fleet[0], clock, 5, token_ms=60.0)  # the edge: a CPU node, 60 ms a token
    long_answer = policy.choose(
        request("interactive", max_new_tokens=64, affinity_key="user-42", deadline_s=4.0), fleet
    )
    assert long_answer.request_class == RequestClass.HOT
    assert long_answer.chosen.replica_id == "priv-1"  # 63 x 60 ms is past half of the 4 s deadline
    # Within half of what is left of its 4 s: 2000 ms, or a hair less by the time it is routed.
    assert any(
        r.startswith("edge: no room for a finish within 2000 ms") or "within 1999 ms" in r for r in long_answer.reasons
    )
    assert chosen(policy, fleet, "interactive", max_new_tokens=16, affinity_key="user-42", deadline_s=4.0) == "edge-1"


def test_a_replica_that_has_gone_quiet_is_tried_again(policy, ledger, clock, fleet):
    finished_calls(ledger, fleet[0], clock, 5, token_ms=200.0)
    assert chosen(policy, fleet, "realtime", max_new_tokens=32, deadline_s=2.0) == "priv-1"
    clock.now += 60  # nothing ended there for a minute: old news is no news
    assert chosen(policy, fleet, "realtime", max_new_tokens=32, deadline_s=2.0) == "edge-1"


def test_a_call_still_waiting_for_its_first_token_delays_the_next_ones_there(policy, ledger, clock, fleet):
    begin(ledger, fleet[0], clock.now - 0.6)  # sent 600 ms ago, nothing back yet
    assert chosen(policy, fleet, "realtime", deadline_s=5.0) == "priv-1"


def test_a_replica_whose_tokens_slow_as_its_batch_fills_is_passed_over_once_it_fills(policy, ledger, clock, fleet):
    edge = fleet[0]
    edge.record.capacity = 8
    edge.pace = Pace(base_ms=10.0, per_row_ms=10.0)  # 20 ms a token alone, 90 ms in a full batch
    finished_calls(ledger, edge, clock, 5, token_ms=20.0)  # what the calls saw while it was quiet
    assert chosen(policy, fleet, "realtime", max_new_tokens=40, deadline_s=2.0) == "edge-1"
    send(ledger, edge, 6, clock)  # a burst arrives: nothing has ended yet, but the router's calls pile up there
    decision = policy.choose(request("realtime", max_new_tokens=40, deadline_s=2.0), fleet)
    assert decision.chosen.replica_id == "priv-1"  # 39 tokens x 80 ms is past half of the 2 s deadline
    assert any("edge: no room for a first token within 200 ms and finish within" in r for r in decision.reasons)
    assert chosen(policy, fleet, "realtime", max_new_tokens=4, deadline_s=2.0) == "edge-1"  # 3 x 80 ms still fits


def test_a_request_that_would_make_an_answer_in_flight_late_goes_elsewhere(policy, ledger, clock, fleet):
    edge = fleet[0]
    edge.record.capacity = 8
    edge.pace = Pace(base_ms=10.0, per_row_ms=10.0)
    realtime = begin(ledger, edge, clock.now, deadline=clock.now + 2.0, max_new_tokens=31)
    realtime.streamed(1, clock.now)  # 30 tokens to go, 1 s of margin: fine at 2 or 3 rows, not at 4
    hot = dict(affinity_key="user-7", deadline_s=10.0, max_new_tokens=16)
    make_hot(policy, **hot)
    assert chosen(policy, fleet, "interactive", **hot) == "edge-1"
    begin(ledger, edge, clock.now, deadline=clock.now + 10.0, max_new_tokens=16)
    decision = policy.choose(request("interactive", **hot), fleet)
    assert decision.chosen.replica_id == "priv-1"  # its own answer would be in time; the REALTIME one would not
    assert any("edge: no room" in r and "best expected answers put at risk 1" in r for r in decision.reasons)
    ledger.ended(realtime, OK, clock.now + 0.5)
    assert chosen(policy, fleet, "interactive", **hot) == "edge-1"


def _two_cloud_tiers(ledger, clock, private_calls: int, public_calls: int):
    """A private and a public replica of 8 rows at 10 ms + 10 ms a row a token, each with calls in flight."""
    fleet = [replica("priv-1", "private", capacity=8, rtt=40), replica("pub-1", "public", capacity=8, rtt=80)]
    for state, calls in zip(fleet, (private_calls, public_calls), strict=True):
        state.pace = Pace(base_ms=10.0, per_row_ms=10.0)
        send(ledger, state, calls, clock)
    return fleet


def test_the_last_pass_sends_work_that_can_wait_where_it_puts_no_answer_at_risk(policy, ledger, clock):
    fleet = _two_cloud_tiers(ledger, clock, private_calls=3, public_calls=4)
    realtime = begin(ledger, fleet[0], clock.now, deadline=clock.now + 2.0, max_new_tokens=31)
    realtime.streamed(1, clock.now)  # 30 tokens to go at 60 ms once one more joins: past half its 2 s
    # 40 tokens at 60 ms fit the 3 s deadline on both tiers but not half of it, so only the last pass takes it.
    decision = policy.choose(request("interactive", max_new_tokens=40, deadline_s=3.0), fleet)
    assert decision.chosen.replica_id == "pub-1", "private comes first for cold INTERACTIVE, but not at that price"
    assert any("puts the fewest answers in flight at risk (0)" in r for r in decision.reasons)
    ledger.ended(realtime, OK, clock.now)
    assert chosen(policy, fleet, "interactive", max_new_tokens=40, deadline_s=3.0) == "priv-1"


def test_the_last_pass_sends_realtime_where_it_is_expected_to_end_soonest(policy, ledger, clock):
    fleet = _two_cloud_tiers(ledger, clock, private_calls=4, public_calls=2)
    # Private is nearer, but 40 tokens at 60 ms there end after 40 at 40 ms from public's farther place.
    decision = policy.choose(request("realtime", max_new_tokens=40, deadline_s=3.0), fleet)
    assert decision.tier_order[0] == Tier.PRIVATE and decision.chosen.replica_id == "pub-1"
    assert any("is expected to end it soonest" in r for r in decision.reasons)
