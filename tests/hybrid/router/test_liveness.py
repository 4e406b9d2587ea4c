"""The liveness watch: a replica with calls open that sends nothing is frozen; a load report is news."""

from __future__ import annotations

from hybrid.router.ledger import Call, CallLedger, HookChain
from hybrid.router.liveness import LivenessWatch
from hybrid.router.policy.ejection import OutlierDetector
from tests.hybrid.router.policy.fakes import FakeClock, replica


def _watch(states):
    clock, ledger = FakeClock(), CallLedger()
    outliers = OutlierDetector(clock=clock)
    outliers.peers = lambda r: states
    watch = LivenessWatch(ledger, outliers, lambda: states, stall_s=1.0, clock=clock)
    return clock, ledger, outliers, watch


def _open(ledger, state, clock, stopped: list) -> Call:
    call = Call(state, clock.now, clock.now + 30, 16)
    call.stop_stream = lambda: stopped.append(call)
    ledger.sent(call)
    return call


def test_a_replica_silent_past_the_stall_with_calls_open_is_ejected_and_its_calls_ended():
    states = [
        replica("edge-1", "edge"),
        replica("edge-2", "edge"),
        replica("edge-3", "edge"),
        replica("edge-4", "edge"),
    ]
    clock, ledger, outliers, watch = _watch(states)
    frozen = states[0]
    watch.heard(frozen)
    stopped: list[Call] = []
    calls = [_open(ledger, frozen, clock, stopped) for _ in range(2)]
    HookChain([ledger]).chunk(calls[0], 1, clock.now)
    clock.now += 0.9
    _open(ledger, frozen, clock, stopped)  # a new call is no news from the replica
    watch.check()
    assert not outliers.ejected(frozen) and not stopped
    clock.now += 0.2
    watch.check()
    assert outliers.ejected(frozen)
    assert len(stopped) == 3 and all("frozen" in c.abandoned for c in stopped)


def test_load_reports_and_chunks_keep_a_busy_replica_alive():
    states = [replica("edge-1", "edge"), replica("edge-2", "edge")]
    clock, ledger, outliers, watch = _watch(states)
    busy = states[0]
    stopped: list[Call] = []
    call = _open(ledger, busy, clock, stopped)
    for _ in range(10):
        clock.now += 0.5
        watch.heard(busy)  # its first token takes 5 s, but it answers its polls
        watch.check()
    HookChain([ledger]).chunk(call, 1, clock.now)
    for _ in range(3):
        clock.now += 0.6
        HookChain([ledger]).chunk(call, 1, clock.now)
        watch.check()
    assert not stopped and not outliers.ejected(busy)


def test_a_replica_never_heard_from_is_judged_from_its_oldest_call():
    states = [replica("edge-1", "edge"), replica("edge-2", "edge")]
    clock, ledger, outliers, watch = _watch(states)
    stopped: list[Call] = []
    _open(ledger, states[0], clock, stopped)
    watch.check()
    assert not stopped, "a replica just discovered is not frozen for want of a poll yet"
    clock.now += 1.1
    watch.check()
    assert stopped
