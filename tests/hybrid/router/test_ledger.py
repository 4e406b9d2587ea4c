"""The call ledger and the hook chain that feeds every call hook."""

from __future__ import annotations

import pytest

from hybrid.router.ledger import CANCELLED, OK, Call, CallLedger, HookChain
from tests.hybrid.router.policy.fakes import replica


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def sent(self, call):
        self.events.append(("sent", call.tokens))

    def chunk(self, call, tokens, now):
        self.events.append(("chunk", call.tokens, call.chunks, call.first_token_at))

    def ended(self, call, outcome, now):
        self.events.append(("ended", outcome.label))


def test_the_calls_book_keeping_counts_only_answers_that_finished():
    ledger = CallLedger()
    state = replica("edge-1", "edge")
    answered, failed = Call(state, 10.0, None, 16), Call(state, 10.0, None, 16)
    ledger.sent(answered)
    ledger.sent(failed)
    assert ledger.outstanding("edge-1") == 2 and ledger.total_outstanding() == 2
    answered.streamed(1, 10.2)
    answered.streamed(10, 11.2)  # 10 tokens after the first in 1 s
    ledger.ended(answered, OK, 11.2)
    ledger.ended(failed, CANCELLED, 11.5)
    assert ledger.outstanding("edge-1") == 0 and not ledger.in_flight("edge-1")
    assert ledger.recent_token_ms("edge-1", 11.5) == pytest.approx(100.0)
    assert ledger.recent_token_ms("edge-1", 30.0) == 0.0, "its window forgets"


def test_the_chain_records_each_chunk_on_the_call_before_any_hook_hears_of_it():
    first, second = Recorder(), Recorder()
    chain = HookChain([first, second])
    call = Call(replica("edge-1", "edge"), 1.0, None, 8)
    chain.sent(call)
    chain.chunk(call, 1, 1.5)
    chain.chunk(call, 3, 1.7)
    chain.ended(call, OK, 1.7)
    expected = [("sent", 0), ("chunk", 1, 1, 1.5), ("chunk", 4, 2, 1.5), ("ended", "ok")]
    assert first.events == expected and second.events == expected
    assert call.tokens_left() == 4
