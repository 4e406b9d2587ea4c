"""What a request sent now can expect at a replica: from its load reports and the router's calls in flight."""

from __future__ import annotations

import pytest

from hybrid.engine.pace import Pace
from hybrid.router.policy.expectations import Outlook, finish_within, no_harm
from tests.hybrid.router.policy.fakes import begin, finished_calls, replica, send


def test_a_request_starts_at_once_while_a_batch_slot_is_free_and_waits_behind_full_batches(clock, ledger):
    state = replica("priv-1", "private", rtt=40)
    assert Outlook(state, ledger, clock.now).start_ms() == pytest.approx(40)
    state.queue_depth = 8  # 8 ahead, 4 slots: 5 must end before it starts, 4 at a time, 400 ms each
    assert Outlook(state, ledger, clock.now).wait_ms() == pytest.approx(500)
    send(ledger, state, 12, clock)  # the router's own calls outnumber what it reported
    assert Outlook(state, ledger, clock.now).load() == 12


def test_a_call_still_waiting_for_its_first_token_delays_the_next_ones_there(clock, ledger):
    edge = replica("edge-1", "edge", rtt=5)
    begin(ledger, edge, clock.now - 0.6)  # sent 600 ms ago, nothing back yet
    assert Outlook(edge, ledger, clock.now).first_token_ms() == pytest.approx(5 + 600)
    edge.recent_ttft_p90_ms = 900.0  # what it reports is slower still
    assert Outlook(edge, ledger, clock.now).first_token_ms() == pytest.approx(5 + 900)


def test_tokens_take_what_they_took_lately_until_the_replica_goes_quiet(clock, ledger):
    edge = replica("edge-1", "edge")
    finished_calls(ledger, edge, clock, 5, token_ms=200.0)
    assert Outlook(edge, ledger, clock.now).token_ms() == pytest.approx(200.0)
    clock.now += 60  # nothing ended there for a minute: old news is no news
    assert Outlook(edge, ledger, clock.now).token_ms() == 0.0


def test_tokens_slow_as_the_batch_fills_before_any_call_ends(clock, ledger):
    edge = replica("edge-1", "edge", capacity=8)
    edge.pace = Pace(base_ms=10.0, per_row_ms=10.0)  # 20 ms a token alone, 90 ms in a full batch
    finished_calls(ledger, edge, clock, 5, token_ms=20.0)
    assert Outlook(edge, ledger, clock.now).token_ms() == pytest.approx(20.0)
    send(ledger, edge, 6, clock)  # a burst: this request would be the seventh row
    outlook = Outlook(edge, ledger, clock.now)
    assert outlook.token_ms() == pytest.approx(80.0)
    assert finish_within(40, 1000).met(outlook) is False, "39 tokens x 80 ms is past 1 s"
    assert finish_within(4, 1000).met(outlook) is True


def test_no_harm_counts_the_answers_in_flight_one_more_row_would_make_late(clock, ledger):
    edge = replica("edge-1", "edge", capacity=8)
    edge.pace = Pace(base_ms=10.0, per_row_ms=10.0)
    realtime = begin(ledger, edge, clock.now, deadline=clock.now + 2.0, max_new_tokens=31)
    realtime.streamed(1, clock.now)  # 30 tokens to go within half of its 2 s: 33 ms a token at most
    harm = no_harm()
    assert harm.met(Outlook(edge, ledger, clock.now)), "with a second row: 30 ms a token"
    begin(ledger, edge, clock.now, deadline=clock.now + 10.0, max_new_tokens=16)
    crowded = Outlook(edge, ledger, clock.now)
    assert crowded.answers_put_at_risk() == 1 and not harm.met(crowded), "with a third row: 40 ms a token"
    assert harm.expected(crowded) == "answers put at risk 1"
