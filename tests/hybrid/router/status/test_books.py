"""The status books as plain objects: a fake clock, hand-made calls, no sockets."""

from __future__ import annotations

import pytest

from hybrid.discovery import ReplicaRecord
from hybrid.errors import OverloadedError
from hybrid.protocol import Tier
from hybrid.router.ledger import OK, Call, Outcome
from hybrid.router.policy.ejection import OutlierDetector
from hybrid.router.policy.policy import Decision
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.policy.tiers import RequestClass
from hybrid.router.status.books import (
    SPILL_FULL,
    SPILL_NO_REPLICA,
    SPILL_NO_ROOM,
    SPILL_RETRIED,
    SPILL_UNUSABLE,
    TTFT_BIN_RATIO,
    LogHistogram,
    StatusBooks,
)
from hybrid.router.status.document import outcomes


class FakeClock:
    def __init__(self, now: float = 6_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def replica(replica_id: str, tier: str) -> ReplicaState:
    record = ReplicaRecord(
        id=replica_id, address="127.0.0.1", port=1, tier=tier, model="m", precision="bf16", region="r", capacity=4
    )
    return ReplicaState(record=record)


def books_of(replicas: list[ReplicaState], clock: FakeClock, minutes: int = 15) -> tuple[StatusBooks, OutlierDetector]:
    outliers = OutlierDetector(clock=clock)
    return StatusBooks(outliers, lambda: replicas, minutes=minutes, clock=clock), outliers


def answered_call(books: StatusBooks, state: ReplicaState, ttft_s: float = 0.1, tokens: int = 3) -> Call:
    call = Call(state, began=0.0, deadline=None, max_new_tokens=tokens, request_class="REALTIME", arrived_at=0.0)
    books.sent(call)
    call.streamed(tokens, ttft_s)
    books.chunk(call, tokens, ttft_s)
    books.ended(call, OK, ttft_s)
    return call


def interactive(chosen: ReplicaState | None) -> Decision:
    order = [Tier.PRIVATE, Tier.PUBLIC, Tier.EDGE]
    return Decision(RequestClass.COLD_INTERACTIVE, order, chosen)


def test_the_books_keep_only_their_minutes_however_long_the_router_runs():
    clock, state = FakeClock(), replica("e-1", "edge")
    books, _ = books_of([state], clock, minutes=3)
    for _ in range(10):
        answered_call(books, state)
        clock.now += 60
    assert len(books._buckets) == 3
    assert [b.answered for b in books.recent()] == [1, 1]  # the current minute has none yet
    assert sum(b.answered for b in books.recent(1)) == 0


def test_a_retried_call_is_no_failed_request_and_a_refusal_is_one():
    clock, private, public = FakeClock(), replica("p-1", "private"), replica("q-1", "public")
    books, _ = books_of([private, public], clock)
    books.routed(interactive(private), 0)
    failed = Call(private, 0.0, None, 3, "cold INTERACTIVE")
    books.sent(failed)
    books.ended(failed, Outcome("unavailable", replica_failed=True), 0.0)
    books.routed(interactive(public), 1, "unavailable")  # resent: the same request
    answered_call(books, public)
    books.refused(interactive(None), 0, OverloadedError("no tier has room for this request within its deadline", 10))
    success, _ = outcomes(books.recent(), 250.0)
    assert (success["answered"], success["failed"], success["retried"], success["refused"]) == (1, 1, 1, 1)
    assert success["rate"] == 0.5 and success["met"] is False
    assert [f["outcome"] for f in books.last_failures] == ["resource_exhausted", "unavailable"]


def test_a_caller_hanging_up_counts_neither_for_nor_against():
    clock, state = FakeClock(), replica("e-1", "edge")
    books, _ = books_of([state], clock)
    call = Call(state, 0.0, None, 3, "REALTIME")
    books.sent(call)
    books.ended(call, Outcome("cancelled"), 0.0)
    success, _ = outcomes(books.recent(), 250.0)
    assert success["rate"] is None and success["cancelled"] == 1 and not books.last_failures


@pytest.mark.parametrize(
    "attempt, last_failure, private_replicas, ejected, expected",
    [
        (1, "unavailable", 1, False, SPILL_RETRIED),
        (1, "resource_exhausted", 1, False, SPILL_FULL),
        (0, "", 0, False, SPILL_NO_REPLICA),
        (0, "", 1, True, SPILL_UNUSABLE),
        (0, "", 1, False, SPILL_NO_ROOM),
    ],
)
def test_each_spillover_says_why_the_first_tier_did_not_take_it(
    attempt, last_failure, private_replicas, ejected, expected
):
    clock, public = FakeClock(), replica("q-1", "public")
    privates = [replica(f"p-{i}", "private") for i in range(private_replicas)]
    books, outliers = books_of([*privates, public], clock)
    for state in privates:
        if ejected:
            outliers.eject(state)
    books.routed(interactive(public), attempt, last_failure)
    assert dict(books.recent()[-1].spillovers) == {("private", "public", expected): 1}


def test_the_realtime_ttft_p99_is_read_against_its_target():
    clock, state = FakeClock(), replica("e-1", "edge")
    books, _ = books_of([state], clock)
    for _ in range(98):
        answered_call(books, state, ttft_s=0.05)
    for _ in range(2):
        answered_call(books, state, ttft_s=0.4)
    _, ttft = outcomes(books.recent(), 250.0)
    assert ttft["p99_ms"] == pytest.approx(400, rel=TTFT_BIN_RATIO - 1) and ttft["met"] is False
    assert ttft["by_class"]["REALTIME"]["p50_ms"] == pytest.approx(50, rel=TTFT_BIN_RATIO - 1)
    _, relaxed = outcomes(books.recent(), 500.0)
    assert relaxed["met"] is True


def test_the_histogram_reads_every_percentile_within_a_bin_of_the_measured_one():
    histogram, values = LogHistogram(), [float(v) for v in range(1, 1001)]
    for value in values:
        histogram.add(value)
    for q in (0.5, 0.9, 0.99):
        measured = values[int(q * len(values)) - 1]
        assert measured <= histogram.quantile(q) <= measured * TTFT_BIN_RATIO
    assert LogHistogram().quantile(0.5) is None
