"""What a request sent now to a replica can expect there, and the expectations a replica must meet.

The figures come from what the replica last reported (``ReplicaState``) and from the router's own calls
to it (``CallLedger``): the calls in flight, their deadlines, and what their tokens took lately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hybrid.router import defaults
from hybrid.router.ledger import CallLedger
from hybrid.router.policy.replica import ReplicaState


class Outlook:
    """One replica as a request sent at ``now`` would find it.

    A snapshot for one decision: each figure is worked out once, however many expectations read it."""

    def __init__(self, replica: ReplicaState, ledger: CallLedger, now: float):
        self.replica = replica
        self.now = now
        self.calls = ledger.in_flight(replica.replica_id)
        self._recent_token_ms = ledger.recent_token_ms(replica.replica_id, now)
        self._load = max(replica.queue_depth + replica.active, len(self.calls))
        self._start_ms: float | None = None
        self._first_token_ms: float | None = None
        self._token_ms: float | None = None

    def load(self) -> int:
        """Requests ahead of a new one: what it reported waiting or running, or what we sent, whichever is more."""
        return self._load

    def relative_load(self) -> float:
        return self.load() / self.replica.capacity

    def wait_ms(self) -> float:
        """Queue wait before a new request starts: zero while a batch slot is free."""
        capacity = self.replica.capacity
        waiting = self.load() - capacity + 1
        if waiting <= 0:
            return 0.0
        per_request = self.replica.mean_request_ms or defaults.ROUTING_DEFAULT_REQUEST_MS
        return waiting / capacity * per_request

    def start_ms(self) -> float:
        """When a request sent now would start here: the network's round trip plus the queue's wait."""
        if self._start_ms is None:
            self._start_ms = (self.replica.rtt_ms or 0.0) + self.wait_ms()
        return self._start_ms

    def oldest_awaiting_first_token_ms(self) -> float:
        """How long the oldest call in flight without its first token has waited; 0 when none."""
        return max(((self.now - c.began) * 1000 for c in self.calls if c.first_token_at is None), default=0.0)

    def first_token_ms(self) -> float:
        """When its first token would arrive: the start plus what first tokens take here now — the 90th
        percentile the replica reports of its last seconds, or longer where a call of ours has waited longer."""
        if self._first_token_ms is None:
            waited = max(self.replica.recent_ttft_p90_ms, self.oldest_awaiting_first_token_ms())
            self._first_token_ms = self.start_ms() + waited
        return self._first_token_ms

    def token_ms(self) -> float:
        """What each token after the first would take: the replica's pace at its batch with this request in it,
        or the 90th percentile of what a token took in our calls that ended lately, whichever is slower.

        The pace sees a burst coming the moment requests pile up on a replica, before any of them ends; the
        calls see what the pace leaves out (the network, the proxies in the path)."""
        if self._token_ms is None:
            rows = min(self.replica.capacity, self.load() + 1)
            self._token_ms = max(self.replica.pace.token_ms(rows), self._recent_token_ms)
        return self._token_ms

    def finish_ms(self, new_tokens: int) -> float:
        """When an answer of ``new_tokens`` would end: its first token, then the rest at the predicted pace."""
        return self.first_token_ms() + (new_tokens - 1) * self.token_ms()

    def paced_finish_ms(self, new_tokens: int) -> float:
        """When an answer would end if it took only its start and its tokens at the predicted pace: ``finish_ms``
        without what first tokens took lately, a figure that lags for seconds after a burst has passed."""
        return self.start_ms() + new_tokens * self.token_ms()

    def unhurried_finish_ms(self, new_tokens: int) -> float:
        """The soonest this replica could ever end such an answer: the round trip, then every token at its pace
        with the batch to itself. Where even that misses a deadline, no amount of waiting makes room."""
        return (self.replica.rtt_ms or 0.0) + new_tokens * self.replica.pace.token_ms(1)

    def answers_put_at_risk(self) -> int:
        """Calls in flight here that one more request would leave expected to end past ``ROUTING_DEADLINE_HEADROOM``
        of their remaining time: each new row slows every row of a CPU's batch, and an answer promised in time
        when it was sent must stay so."""
        token_ms = self.token_ms()
        headroom = defaults.ROUTING_DEADLINE_HEADROOM
        return sum(
            1
            for c in self.calls
            if c.deadline is not None and c.tokens_left() * token_ms > headroom * (c.deadline - self.now) * 1000
        )


@dataclass
class Expectation:
    """What a replica must be expected to do for a request, e.g. its first token within 250 ms."""

    wanted: str
    # What the replica is expected to give, and the most that passes, e.g. "first token", 250, " ms".
    measure: str
    predicted: Callable[[Outlook], float]
    limit: float
    unit: str = " ms"

    def met(self, outlook: Outlook) -> bool:
        return self.predicted(outlook) <= self.limit

    def expected(self, outlook: Outlook) -> str:
        return f"{self.measure} {self.predicted(outlook):.0f}{self.unit}"


def within(measure: str, predicted: Callable[[Outlook], float], limit_ms: float) -> Expectation:
    return Expectation(f"{measure} within {limit_ms:.0f} ms", measure, predicted, limit_ms)


def first_token_within(limit_ms: float) -> Expectation:
    return within("first token", Outlook.first_token_ms, limit_ms)


def finish_within(new_tokens: int, limit_ms: float) -> Expectation:
    return within("finish", lambda outlook: outlook.finish_ms(new_tokens), limit_ms)


def paced_finish_within(new_tokens: int, limit_ms: float) -> Expectation:
    return within("finish at the pace", lambda outlook: outlook.paced_finish_ms(new_tokens), limit_ms)


def no_harm() -> Expectation:
    """No answer the router has in flight there would be put past its deadline by one more request."""
    return Expectation(
        "no answer in flight put past its deadline", "answers put at risk", Outlook.answers_put_at_risk, 0, ""
    )
