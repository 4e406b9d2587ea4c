"""Request classes and the routing table."""

from __future__ import annotations

from hybrid.protocol import Priority, Tier
from hybrid.router.policy.tiers import RequestClass, classify, tier_order
from tests.hybrid.router.policy.fakes import replica, request


def test_each_class_tries_the_tiers_in_the_tables_order():
    assert tier_order(RequestClass.HOT, []) == [Tier.EDGE, Tier.PRIVATE, Tier.PUBLIC]
    assert tier_order(RequestClass.COLD_INTERACTIVE, []) == [Tier.PRIVATE, Tier.PUBLIC, Tier.EDGE]
    assert tier_order(RequestClass.BATCH, []) == [Tier.PUBLIC, Tier.PRIVATE], "BATCH never goes to the edge"


def test_realtime_orders_the_tiers_by_measured_rtt_not_by_their_names(fleet):
    assert tier_order(RequestClass.REALTIME, fleet) == [Tier.EDGE, Tier.PRIVATE, Tier.PUBLIC]
    fleet[0].rtt_ms = 120.0  # the edge is far from this router
    assert tier_order(RequestClass.REALTIME, fleet) == [Tier.PRIVATE, Tier.PUBLIC, Tier.EDGE]


def test_realtime_takes_tiers_whose_round_trips_differ_by_jitter_alone_in_the_tables_order():
    # All on one host: the private replica answered its load polls a little sooner than the busier edge agent.
    fleet = [replica("edge-1", "edge", rtt=3.5), replica("priv-1", "private", rtt=1.2), replica("pub-1", "public", rtt=2)]
    assert tier_order(RequestClass.REALTIME, fleet) == [Tier.EDGE, Tier.PRIVATE, Tier.PUBLIC]
    fleet = [replica("edge-1", "edge", rtt=12), replica("priv-1", "private", rtt=3), replica("pub-1", "public", rtt=6)]
    assert tier_order(RequestClass.REALTIME, fleet) == [Tier.PRIVATE, Tier.PUBLIC, Tier.EDGE], "7 ms is a real gap"


def test_realtime_puts_tiers_it_has_not_measured_last():
    fleet = [replica("edge-1", "edge"), replica("pub-1", "public", rtt=80)]
    assert tier_order(RequestClass.REALTIME, fleet) == [Tier.PUBLIC, Tier.EDGE, Tier.PRIVATE]


def test_classes_follow_priority_and_hotness():
    assert request("realtime").priority == Priority.REALTIME
    assert classify(request("realtime"), hot=True) == RequestClass.REALTIME, "REALTIME is never demoted"
    assert classify(request("batch"), hot=True) == RequestClass.HOT
    assert classify(request("batch"), hot=False) == RequestClass.BATCH
    assert classify(request("interactive"), hot=False) == RequestClass.COLD_INTERACTIVE
