"""Candidate filters: which replicas of each tier may serve a request at all."""

from __future__ import annotations

from hybrid.protocol import Tier
from hybrid.router.policy import filters
from hybrid.router.policy.ejection import OutlierDetector
from tests.hybrid.router.policy.fakes import replica, request

ORDER = [Tier.EDGE, Tier.PRIVATE, Tier.PUBLIC]


def kept(request_, replicas, usable, reasons=None):
    by_tier = filters.candidates(request_, replicas, ORDER, usable, [] if reasons is None else reasons)
    return {tier: [r.replica_id for r in members] for tier, members in by_tier.items()}


def test_a_tier_without_the_model_has_no_candidates_and_says_so(fleet):
    fleet[2].record = fleet[2].record.model_copy(update={"model": "other-model"})
    reasons: list[str] = []
    assert kept(request(model="smollm2-135m"), fleet, [], reasons) == {Tier.EDGE: ["edge-1"], Tier.PRIVATE: ["priv-1"]}
    assert "public: no replica of this model" in reasons


def test_min_precision_full_skips_a_quantized_edge_and_never_keeps_a_quantized_replica(fleet):
    strict = request(full_precision=True)
    reasons: list[str] = []
    assert Tier.EDGE not in kept(strict, fleet, [filters.precise_enough(strict)], reasons)
    assert "edge: skipped, min_precision FULL and its replicas are quantized" in reasons
    mixed = [replica("edge-q", "edge"), replica("edge-f", "edge", precision="fp16")]
    assert kept(strict, mixed, [filters.precise_enough(strict)])[Tier.EDGE] == ["edge-f"]
    assert kept(request(), mixed, [filters.precise_enough(request())])[Tier.EDGE] == ["edge-q", "edge-f"]


def test_replicas_that_failed_this_request_are_excluded_from_its_retry():
    fleet = [replica("priv-1", "private"), replica("priv-2", "private")]
    reasons: list[str] = []
    assert kept(request(), fleet, [filters.not_excluded(frozenset({"priv-1"}))], reasons)[Tier.PRIVATE] == ["priv-2"]
    assert "private: 1 replica(s) ejected, draining, excluded or below min_precision" in reasons


def test_ejected_and_draining_replicas_are_left_out(fleet):
    detector = OutlierDetector(max_failures=1)
    detector.record_failure(fleet[1], [fleet[1]])
    fleet[2].draining = True
    usable = [filters.not_ejected(detector), filters.not_draining]
    assert kept(request(), fleet, usable) == {Tier.EDGE: ["edge-1"], Tier.PRIVATE: [], Tier.PUBLIC: []}
