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
