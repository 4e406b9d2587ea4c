"""The router's calls to its replicas: one ``Call`` per request sent, and the hooks that follow each call.

The data plane tells ``CallHooks`` what happens to a call (sent, a chunk came, it ended); each hook keeps
its own books: the ``CallLedger`` here (calls in flight per replica and what their tokens took, which
the policy's expectations read), the outlier detector (``policy/ejection.py``) and the router's metrics
(``metrics.py``). The data plane itself keeps no figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hybrid.engine.window import OrderedRecentWindow
from hybrid.router import defaults

if TYPE_CHECKING:
    from hybrid.router.keyguard import Grant
    from hybrid.router.policy.policy import Decision
    from hybrid.router.policy.replica import ReplicaState


@dataclass(eq=False)
class Call:
    """One request the router sent to a replica."""

    replica: ReplicaState
    began: float
    # When its caller stops waiting, on the clock ``began`` is on; None for no deadline.
    deadline: float | None
    max_new_tokens: int
    request_class: str = ""
    # When the request reached the router, on the same clock.
    arrived_at: float = 0.0
    first_token_at: float | None = None
    tokens: int = 0
    chunks: int = 0
    last_chunk_at: float | None = None
    # Why the router ended the call itself (its replica was found frozen, or left and its grace ran out).
    abandoned: str = ""
    # Set by whoever streams the call: stops its stream (the gRPC call's cancel).
    stop_stream: Callable[[], object] | None = None
    request_id: str = ""
    # Its place among the request's tries (0 for the first), and how many more the router would make.
    attempt: int = 0
    attempts_left: int = 0
    # The routing decision that sent it here; None where the caller chose the replica itself.
    decision: Decision | None = None
    # The request's trace (hybrid.router.tracing.RequestTrace) while the router traces, else None.
    trace: object = None
    # The API key's admission of the request, where the router checks keys.
    grant: Grant | None = None
    # (prompt, completion) tokens as the final chunk's usage reported them; None until it came.
    reported_usage: tuple[int, int] | None = None

    def abandon(self, reason: str) -> None:
        """Ends the call from outside its stream: the stream then fails with UNAVAILABLE and this reason."""
        if not self.abandoned:
            self.abandoned = reason
            if self.stop_stream is not None:
                self.stop_stream()

    def routing_reason(self) -> str:
        return "" if self.decision is None else routing_reason(self.decision, self.replica.record.tier, self.attempt)

    def retried(self, outcome: Outcome) -> bool:
        """Whether the router sends the request on to another replica after this call ends so: it failed before
        any chunk, with a status another replica need not repeat, and the router has tries left."""
        return outcome.retryable and self.chunks == 0 and self.attempts_left > 0

    def tokens_left(self) -> int:
        return max(1, self.max_new_tokens - self.tokens)

    def streamed(self, tokens: int, now: float) -> None:
        """A message of the answer came, with ``tokens`` tokens."""
        if self.first_token_at is None:
            self.first_token_at = now
        self.tokens += tokens
        self.chunks += 1
        self.last_chunk_at = now


def routing_reason(decision: Decision, tier: str, attempt: int) -> str:
    """Why a request went to ``tier``, in a few words: its class's first choice, or a spillover, and which try."""
    first = decision.tier_order[0].name.lower() if decision.tier_order else tier
    why = "first choice" if tier == first else f"spillover from {first}"
    return f"{why}, retry {attempt}" if attempt else why


def refusal(decision: Decision) -> tuple[str, str]:
    """How a request the policy chose no replica for ends: its outcome's label, and why."""
    if decision.impossible_ms is not None:
        return "impossible_deadline", (
            f"no replica could finish within the deadline even idle (the soonest in {decision.impossible_ms:.0f} ms)"
        )
    return "refused", f"no tier has room; retry after {decision.retry_after_ms} ms"


@dataclass(frozen=True)
class Outcome:
    """How a call ended. ``label`` names it in the metrics: ok, cancelled, cut_short or a status code."""

    label: str
    # The answer came whole, final chunk included.
    answered: bool = False
    # The replica's own fault (not the caller's, not a full queue): counts toward its ejection.
    replica_failed: bool = False
    # The fault was reaching it (refused, cut off, silent) rather than an error it answered with.
    unreachable: bool = False
    # Another replica may answer where this one did not: not the caller's own mistake, nor the caller gone.
    retryable: bool = False


OK = Outcome("ok", answered=True)
# The caller went away.
CANCELLED = Outcome("cancelled")


class CallHooks:
    """What a hook may hear of each call; each one overrides the events it keeps books on."""

    def sent(self, call: Call) -> None:
        pass

    def chunk(self, call: Call, tokens: int, now: float) -> None:
        pass

    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        pass


class HookChain:
    """Records each event on the call, then tells every hook, in order."""

    def __init__(self, hooks: Iterable[CallHooks]):
        self.hooks = list(hooks)

    def sent(self, call: Call) -> None:
        for hook in self.hooks:
            hook.sent(call)

    def chunk(self, call: Call, tokens: int, now: float) -> None:
        call.streamed(tokens, now)
        for hook in self.hooks:
            hook.chunk(call, tokens, now)

    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        for hook in self.hooks:
            hook.ended(call, outcome, now)


class CallLedger(CallHooks):
    """Calls in flight per replica, and how long each token after the first took in calls that ended well.

    A replica's batch size says nothing of its speed (a CPU node with 32 slots may take 50 ms a token);
    these say what a request sent now meets there, and scale with the tokens it asks for."""

    def __init__(self, window_s: float = defaults.ROUTING_RECENT_WINDOW_S):
        self.window_s = window_s
        self._in_flight: dict[str, list[Call]] = {}
        self._token_ms: dict[str, OrderedRecentWindow] = {}

    def sent(self, call: Call) -> None:
        self._in_flight.setdefault(call.replica.replica_id, []).append(call)

    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        replica_id = call.replica.replica_id
        calls = self._in_flight.get(replica_id, [])
        if call in calls:
            calls.remove(call)
        if not calls:
            self._in_flight.pop(replica_id, None)
        if outcome.answered and call.first_token_at is not None and call.tokens > 1:
            window = self._token_ms.get(replica_id)
            if window is None:
                window = self._token_ms[replica_id] = OrderedRecentWindow(self.window_s)
            window.add(now, (now - call.first_token_at) * 1000 / (call.tokens - 1))

    def in_flight(self, replica_id: str) -> list[Call]:
        return list(self._in_flight.get(replica_id, ()))

    def outstanding(self, replica_id: str) -> int:
        """Requests the router has sent to the replica and not yet seen end."""
        return len(self._in_flight.get(replica_id, ()))

    def total_outstanding(self) -> int:
        return sum(len(calls) for calls in self._in_flight.values())

    def recent_token_ms(self, replica_id: str, now: float, quantile: float = 0.9) -> float:
        """That quantile of what a token took in the replica's calls that ended lately; 0 when none did."""
        window = self._token_ms.get(replica_id)
        return window.quantile(now, quantile) if window is not None else 0.0
