"""What the router knows of a replica from discovery and its load reports."""

from __future__ import annotations

import pytest

from hybrid.protocol import Tier
from tests.hybrid.router.policy.fakes import replica


def test_a_replica_knows_its_tier_and_whether_its_precision_is_full():
    edge, private = replica("edge-1", "edge"), replica("priv-1", "private")
    assert edge.tier == Tier.EDGE and not edge.full_precision
    assert private.tier == Tier.PRIVATE and private.full_precision
    assert replica("edge-2", "edge", precision="fp32").full_precision


def test_a_replica_listed_without_capacity_still_counts_one_slot():
    state = replica("priv-1", "private")
    state.record = state.record.model_copy(update={"capacity": 0})  # what an unchecked registry could say
    assert state.capacity == 1


def test_round_trip_time_is_smoothed_not_replaced():
    state = replica("priv-1", "private")
    state.observe_rtt(100.0)
    assert state.rtt_ms == 100.0
    state.observe_rtt(200.0)
    assert state.rtt_ms == pytest.approx(120.0), "one slow poll moves the estimate a fifth of the way"


def test_a_spell_of_slow_polls_does_not_move_a_replica_away_but_a_lasting_change_does():
    state = replica("edge-1", "edge")
    for _ in range(20):
        state.observe_rtt(1.0)
    for _ in range(10):  # the host is busy for five seconds of polls
        state.observe_rtt(30.0)
    assert state.rtt_ms > 25, "what a request meets now follows the slow polls"
    assert state.distance_ms < 4, "how near the replica is does not"
    state.observe_rtt(0.8)
    assert state.distance_ms == 0.8, "a faster poll lowers the distance at once"
    for _ in range(400):  # the route really got longer: minutes of slow polls
        state.observe_rtt(30.0)
    assert state.distance_ms > 25


def test_the_tiers_keep_their_order_through_the_edges_slow_spell():
    from hybrid.router.policy.tiers import RequestClass, tier_order

    edge, private = replica("edge-1", "edge"), replica("priv-1", "private")
    for _ in range(20):
        edge.observe_rtt(2.0)
        private.observe_rtt(1.0)
    for _ in range(6):
        edge.observe_rtt(40.0)
    assert edge.rtt_ms > private.rtt_ms + 5
    assert tier_order(RequestClass.REALTIME, [private, edge])[0] == Tier.EDGE
