"""Outlier ejection: back-off, a cap on how much of a tier is out, and a fresh start after a healthy spell."""

from __future__ import annotations

import pytest

from hybrid.router.ledger import OK, Call, Outcome
from hybrid.router.policy.ejection import OutlierDetector
from tests.hybrid.router.policy.fakes import replica


@pytest.fixture
def detector(clock):
    return OutlierDetector(clock=clock)


def test_outlier_ejection_backs_off_and_recovers(detector, clock):
    peers = [replica(f"priv-{i}", "private") for i in range(4)]
    bad = peers[0]
    assert not any(detector.record_failure(bad, peers) for _ in range(4))
    assert detector.record_failure(bad, peers)  # the fifth in a row
    assert detector.ejected(bad)
    clock.now += 31
    assert not detector.ejected(bad)
    for _ in range(5):
        detector.record_failure(bad, peers)
    assert detector.ejected_until(bad) - clock.now == pytest.approx(60)  # the second ejection lasts twice as long


def test_outlier_ejection_never_empties_more_than_half_a_tier(detector):
    peers = [replica("priv-1", "private"), replica("priv-2", "private")]
    for _ in range(5):
        detector.record_failure(peers[0], peers)
    for _ in range(10):
        detector.record_failure(peers[1], peers)
    assert detector.ejected(peers[0]) and not detector.ejected(peers[1])


def test_a_replica_healthy_for_a_while_starts_its_back_off_afresh(detector, clock):
    peers = [replica(f"priv-{i}", "private") for i in range(4)]
    bad = peers[0]
    for ejection in (1, 2):
        for _ in range(5):
            detector.record_failure(bad, peers)
        assert detector.ejected_until(bad) - clock.now == pytest.approx(30 * ejection)
        clock.now += 30 * ejection + 1
    clock.now += 30  # back, and without a failure for the healthy period
    for _ in range(5):
        detector.record_failure(bad, peers)
    assert detector.ejected_until(bad) - clock.now == pytest.approx(30), "not 90 s: it had recovered"


def test_as_a_call_hook_it_counts_replica_failures_only(detector):
    peers = [replica(f"priv-{i}", "private") for i in range(4)]
    detector.peers = lambda state: peers
    ejected: list[str] = []
    detector.on_ejected = lambda state: ejected.append(state.replica_id)
    call = Call(peers[0], 0.0, None, 1)
    for _ in range(10):
        detector.ended(call, Outcome("resource_exhausted"), 0.0)  # full, not failing
        detector.ended(call, Outcome("cancelled"), 0.0)  # the caller left
    assert detector.consecutive_failures(peers[0]) == 0 and not ejected
    for _ in range(4):
        detector.ended(call, Outcome("unavailable", replica_failed=True), 0.0)
    detector.ended(call, OK, 0.0)
    assert detector.consecutive_failures(peers[0]) == 0, "a success ends the run of failures"
    for _ in range(5):
        detector.ended(call, Outcome("unavailable", replica_failed=True), 0.0)
    assert ejected == ["priv-0"] and detector.ejected(peers[0])


def test_one_ejected_for_being_unreachable_is_back_on_its_first_load_report(detector, clock):
    peers = [replica(f"priv-{i}", "private") for i in range(4)]
    dead = peers[0]
    for _ in range(5):
        detector.record_failure(dead, peers, unreachable=True)
    assert detector.ejected(dead)
    clock.now += 2  # restarted and serving: its load poll answers
    assert detector.record_reachable(dead)
    assert not detector.ejected(dead)


def test_one_ejected_for_its_errors_serves_out_its_ejection_although_it_answers_polls(detector, clock):
    peers = [replica(f"priv-{i}", "private") for i in range(4)]
    erring = peers[0]
    for _ in range(5):
        detector.record_failure(erring, peers)  # it answered, with errors
    assert not detector.record_reachable(erring)
    assert detector.ejected(erring)


def test_eject_takes_a_frozen_replica_out_at_once_but_never_more_than_a_tiers_share(detector):
    peers = [replica("priv-1", "private"), replica("priv-2", "private")]
    detector.peers = lambda r: peers
    assert detector.eject(peers[0])
    assert detector.ejected(peers[0])
    assert not detector.eject(peers[1]), "half the tier is out already"
