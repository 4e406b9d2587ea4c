"""Fake replica states, a settable clock and requests for the policy's unit tests: no sockets, no model."""

from __future__ import annotations

import time

from hybrid.client import build_request
from hybrid.discovery import ReplicaRecord
from hybrid.protocol import GenerationRequest, request_from_proto
from hybrid.router.ledger import OK, Call, CallLedger
from hybrid.router.policy.replica import ReplicaState


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def replica(
    rid: str, tier: str, capacity: int = 4, precision: str | None = None, rtt: float | None = None
) -> ReplicaState:
    precision = precision or ("int8-b32" if tier == "edge" else "bf16")
    record = ReplicaRecord(
        id=rid,
        address="127.0.0.1",
        port=6000,
        tier=tier,
        model="smollm2-135m",
        precision=precision,
        region="eu",
        capacity=capacity,
        cost_per_hour={"edge": 0.1, "private": 2.0, "public": 1.0}[tier],
    )
    return ReplicaState(record=record, rtt_ms=rtt, mean_request_ms=400.0)


def request(priority: str = "interactive", deadline_s: float | None = None, **kwargs) -> GenerationRequest:
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    return request_from_proto(
        build_request(prompt=kwargs.pop("prompt", "hello"), priority=priority, **kwargs), deadline
    )


def begin(
    ledger: CallLedger, state: ReplicaState, began: float, deadline: float | None = None, max_new_tokens: int = 1
) -> Call:
    """The router sends one request to ``state`` at ``began``."""
    call = Call(state, began, deadline, max_new_tokens)
    ledger.sent(call)
    return call


def send(ledger: CallLedger, state: ReplicaState, calls: int, clock: FakeClock) -> None:
    """The router has ``calls`` more requests in flight at this replica, sent just now."""
    for _ in range(calls):
        begin(ledger, state, clock.now)


def finished_calls(ledger: CallLedger, state: ReplicaState, clock: FakeClock, count: int, token_ms: float) -> None:
    """Records ``count`` calls of 21 tokens that ended just now, each token after the first having taken ``token_ms``."""
    tokens = 21
    for _ in range(count):
        call = begin(ledger, state, clock.now - 2.0)
        call.streamed(1, clock.now - (tokens - 1) * token_ms / 1000)
        call.streamed(tokens - 1, clock.now)
        ledger.ended(call, OK, clock.now)
