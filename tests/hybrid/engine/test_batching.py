"""The dynamic batcher as a plain object: a fake clock, no sockets, no sleeps."""

from __future__ import annotations

import threading

import pytest

from hybrid.engine.batching import DynamicBatcher, TicketState
from hybrid.errors import OverloadedError
from hybrid.protocol import Priority


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_defaults_are_32_a_batch_and_50_ms(clock):
    batcher = DynamicBatcher(clock=clock)
    assert batcher.max_batch_size == 32
    assert batcher.max_wait_s == pytest.approx(0.050)


def test_a_lone_request_waits_out_the_window_then_goes(clock):
    batcher = DynamicBatcher(max_wait_ms=50, clock=clock)
    ticket = batcher.submit("a")
    assert batcher.next_batch(block=False) == []
    clock.advance(0.049)
    assert batcher.next_batch(block=False) == []
    clock.advance(0.001)
    assert batcher.next_batch(block=False) == [ticket]
    assert ticket.queue_time_s == pytest.approx(0.050)
    assert ticket.state == TicketState.DISPATCHED


def test_a_full_batch_goes_at_once_and_never_exceeds_the_limit(clock):
    batcher = DynamicBatcher(max_batch_size=4, clock=clock)
    tickets = [batcher.submit(i) for i in range(6)]
    batch = batcher.next_batch(block=False)
    assert [t.item for t in batch] == [0, 1, 2, 3]
    assert all(t.queue_time_s == 0 for t in batch)
    # Two left: not a full batch, so they wait for the window.
    assert batcher.next_batch(block=False) == []
    clock.advance(0.05)
    assert batcher.next_batch(block=False) == tickets[4:]


def test_free_slots_bound_the_batch(clock):
    batcher = DynamicBatcher(max_batch_size=32, clock=clock)
    for i in range(3):
        batcher.submit(i)
    # Only two slots free in the running batch: two waiting requests fill them.
    assert [t.item for t in batcher.next_batch(free_slots=2, block=False)] == [0, 1]
    assert batcher.next_batch(free_slots=0, block=False) == []


def test_realtime_skips_the_wait_while_a_batch_fills_up(clock):
    batcher = DynamicBatcher(max_batch_size=32, max_wait_ms=50, clock=clock)
    interactive = [batcher.submit(f"i{i}", Priority.INTERACTIVE) for i in range(10)]
    clock.advance(0.002)
    realtime = batcher.submit("rt", Priority.REALTIME)
    clock.advance(0.001)
    batch = batcher.next_batch(block=False)
    # The REALTIME request made the batch ready 1 ms after it arrived, not 50 ms; it leads the batch.
    assert batch[0] is realtime
    assert realtime.queue_time_s == pytest.approx(0.001)
    assert realtime.queue_time_s < batcher.max_wait_s / 10
    assert {t.item for t in batch[1:]} == {t.item for t in interactive}


def test_realtime_goes_first_when_slots_are_scarce(clock):
    batcher = DynamicBatcher(max_batch_size=32, clock=clock)
    for i in range(5):
        batcher.submit(f"b{i}", Priority.BATCH)
    batcher.submit("i", Priority.INTERACTIVE)
    batcher.submit("rt", Priority.REALTIME)
    assert [t.item for t in batcher.next_batch(free_slots=2, block=False)] == ["rt", "i"]
    clock.advance(0.05)
    assert [t.item for t in batcher.next_batch(block=False)] == [f"b{i}" for i in range(5)]


def test_realtime_wakes_a_blocked_engine_thread():
    """With the real clock: an engine blocked in next_batch is woken by a REALTIME submit, not by the window."""
    batcher = DynamicBatcher(max_batch_size=32, max_wait_ms=5_000)
    batcher.submit("slow", Priority.INTERACTIVE)
    got: list = []
    engine = threading.Thread(target=lambda: got.extend(batcher.next_batch(timeout=30)))
    engine.start()
    realtime = batcher.submit("rt", Priority.REALTIME)
    engine.join(timeout=10)
    assert not engine.is_alive()
    assert got[0] is realtime
    # Recorded by the batcher: far below the 5 s window it would otherwise have waited.
    assert realtime.queue_time_s < 1.0


def test_queue_bound_answers_overloaded_with_a_retry_hint(clock):
    batcher = DynamicBatcher(max_queue_size=3, clock=clock)
    for i in range(3):
        batcher.submit(i)
    with pytest.raises(OverloadedError) as failure:
        batcher.submit(3)
    assert failure.value.retry_after_ms >= 100
    assert "retry after" in str(failure.value)
    assert batcher.stats.rejected == 1
    assert len(batcher) == 3


def test_expired_requests_are_dropped_before_compute(clock):
    expired = []
    batcher = DynamicBatcher(max_wait_ms=50, clock=clock, on_expired=expired.append)
    late = batcher.submit("late", deadline=clock.now + 0.01)
    fine = batcher.submit("fine", deadline=clock.now + 10)
    clock.advance(0.05)
    assert batcher.next_batch(block=False) == [fine]
    assert expired == [late] and late.state == TicketState.EXPIRED
    assert batcher.stats.expired == 1


def test_cancel_frees_the_place_in_the_queue(clock):
    batcher = DynamicBatcher(max_queue_size=1, clock=clock)
    gone = batcher.submit("gone")
    assert batcher.cancel(gone)
    assert not batcher.cancel(gone)
    kept = batcher.submit("kept")  # the freed place is usable
    clock.advance(0.05)
    assert batcher.next_batch(block=False) == [kept]
    assert batcher.stats.cancelled == 1


def test_cancelled_realtime_no_longer_forces_a_batch(clock):
    batcher = DynamicBatcher(clock=clock)
    batcher.submit("i")
    rt = batcher.submit("rt", Priority.REALTIME)
    batcher.cancel(rt)
    assert batcher.next_batch(block=False) == []


def test_close_hands_back_whatever_is_still_queued(clock):
    batcher = DynamicBatcher(clock=clock)
    tickets = [batcher.submit(i) for i in range(3)]
    assert set(batcher.close()) == set(tickets)
    with pytest.raises(OverloadedError):
        batcher.submit("after close")
    assert batcher.next_batch(block=True, timeout=1) == []


@pytest.mark.parametrize("kwargs", [dict(max_batch_size=0), dict(max_wait_ms=-1), dict(max_queue_size=0)])
def test_impossible_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        DynamicBatcher(**kwargs)
