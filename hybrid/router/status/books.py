"""The status page's books: what the router's calls did over the last minutes, in a ring of minute buckets.

``StatusBooks`` is a call hook (``hybrid.router.ledger.CallHooks``) plus the notes the data plane gives it on
each choice (``routed``, ``refused``) and when it gives a request up (``gave_up``). Memory is bounded whatever the traffic: ``minutes`` buckets, each
holding counters keyed by class, tier and outcome, and first-token times as a log-binned histogram (bins
``TTFT_BIN_RATIO`` apart, so a percentile read from it is within that ratio of the one measured); the last
failures are a short ring.

Requests, not calls, count toward the success rate: a call that failed before its first token and was
resent elsewhere (``routed`` with ``attempt`` above 0) is a retry, not a failure; a caller that hung up
counts neither way. For the same reason a full replica's RESOURCE_EXHAUSTED is a spillover, not one of the
last failures: the request's own end is, where no replica took it.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hybrid.router.ledger import Call, CallHooks, Outcome

if TYPE_CHECKING:
    from hybrid.errors import HybridError
    from hybrid.router.policy.ejection import OutlierDetector
    from hybrid.router.policy.policy import Decision
    from hybrid.router.policy.replica import ReplicaState

STATUS_MINUTES = 15
LAST_FAILURES = 20
TTFT_BIN_RATIO = 1.05
_LOG_RATIO = math.log(TTFT_BIN_RATIO)
# A replica's answer when it has no slot free: a spillover, not a failure of the request.
FULL = "resource_exhausted"
# Tier of a request no replica took.
NO_TIER = "none"
ALL = "all"

# Why a request went past the first tier of its class.
SPILL_RETRIED = "its replica there failed before the first token"
SPILL_FULL = "its replica there was full (RESOURCE_EXHAUSTED)"
SPILL_NO_REPLICA = "no replica of its model there"
SPILL_UNUSABLE = "every replica there ejected, draining or already tried"
SPILL_NO_ROOM = "no replica there expected to meet its target (full or slow)"


class LogHistogram:
    """Counts of milliseconds in bins ``TTFT_BIN_RATIO`` apart: bounded, mergeable, percentiles within a bin."""

    def __init__(self) -> None:
        self.bins: Counter[int] = Counter()
        self.count = 0

    def add(self, ms: float) -> None:
        self.bins[math.floor(math.log(max(ms, 0.01)) / _LOG_RATIO)] += 1
        self.count += 1

    def merge(self, other: LogHistogram) -> None:
        self.bins.update(other.bins)
        self.count += other.count

    def quantile(self, q: float) -> float | None:
        """The upper edge of the bin holding the ``q``-th quantile (nearest rank); None when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.bins):
            seen += self.bins[index]
            if seen >= rank:
                return TTFT_BIN_RATIO ** (index + 1)
        return None


@dataclass
class MinuteBucket:
    minute: int
    # Calls sent, by (class, tier); requests no replica took count under tier NO_TIER.
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    answered: int = 0
    failed_calls: int = 0
    retried: int = 0
    refused: int = 0
    cancelled: int = 0
    tokens_by_tier: Counter[str] = field(default_factory=Counter)
    ttft_ms: dict[str, LogHistogram] = field(default_factory=dict)
    spillovers: Counter[tuple[str, str, str]] = field(default_factory=Counter)


class StatusBooks(CallHooks):
    def __init__(
        self,
        outliers: OutlierDetector,
        replicas: Callable[[], list[ReplicaState]],
        minutes: int = STATUS_MINUTES,
        clock: Callable[[], float] = time.time,
    ):
        self.outliers = outliers
        self.replicas = replicas
        self.minutes = minutes
        self._clock = clock
        self._buckets: deque[MinuteBucket] = deque(maxlen=minutes)
        self.last_failures: deque[dict] = deque(maxlen=LAST_FAILURES)
        self.started_at = clock()

    def _bucket(self) -> MinuteBucket:
        minute = int(self._clock() // 60)
        if not self._buckets or self._buckets[-1].minute != minute:
            self._buckets.append(MinuteBucket(minute))
        return self._buckets[-1]

    def recent(self, minutes: int | None = None) -> list[MinuteBucket]:
        """The buckets of the last ``minutes`` minutes (all kept by default), the current one included."""
        first = int(self._clock() // 60) - (minutes or self.minutes) + 1
        return [b for b in self._buckets if b.minute >= first]

    def covered_s(self, minutes: int | None = None) -> float:
        """Seconds the recent buckets span: since the router started where that is sooner."""
        now = self._clock()
        window_start = (int(now // 60) - (minutes or self.minutes) + 1) * 60
        return max(1e-3, now - max(window_start, self.started_at))

    # --- notes from the data plane, once per choice ---
    def routed(self, decision: Decision, attempt: int, last_failure: str = "") -> None:
        """A replica was chosen, the ``attempt``-th for the request; ``last_failure`` names the status the
        replica before it failed with (lower case), where there was one."""
        bucket = self._bucket()
        if attempt:
            bucket.retried += 1
        chosen = decision.chosen
        if chosen is None or not decision.tier_order:
            return
        first = decision.tier_order[0].name.lower()
        if chosen.record.tier != first:
            reason = self._spill_reason(decision, chosen, attempt, last_failure)
            bucket.spillovers[(first, chosen.record.tier, reason)] += 1

    def _spill_reason(self, decision: Decision, chosen: ReplicaState, attempt: int, last_failure: str) -> str:
        if attempt:
            return SPILL_FULL if last_failure == FULL else SPILL_RETRIED
        first = decision.tier_order[0]
        members = [r for r in self.replicas() if r.tier == first and r.record.model == chosen.record.model]
        if not members:
            return SPILL_NO_REPLICA
        if all(self.outliers.ejected(r) or r.draining for r in members):
            return SPILL_UNUSABLE
        return SPILL_NO_ROOM

    def refused(self, decision: Decision, attempt: int, error: HybridError) -> None:
        bucket = self._bucket()
        if attempt:
            bucket.retried += 1  # the last failed call's request ends here, refused, and counts once
        bucket.refused += 1
        request_class = decision.request_class.value
        bucket.sent[(request_class, NO_TIER)] += 1
        bucket.outcomes[(request_class, NO_TIER, "refused")] += 1
        self._note_failure("", NO_TIER, request_class, error.code.name.lower(), error.message)

    def gave_up(self, decision: Decision, error: HybridError) -> None:
        """Every replica tried failed before answering: the request's end (its calls are counted already)."""
        self._note_failure("", NO_TIER, decision.request_class.value, error.code.name.lower(), error.message)

    def _note_failure(self, replica_id: str, tier: str, request_class: str, outcome: str, detail: str) -> None:
        self.last_failures.appendleft(
            {
                "at": self._clock(),
                "replica": replica_id,
                "tier": tier,
                "request_class": request_class,
                "outcome": outcome,
                "detail": detail,
            }
        )

    # --- CallHooks ---
    def sent(self, call: Call) -> None:
        self._bucket().sent[(call.request_class, call.replica.record.tier)] += 1

    def chunk(self, call: Call, tokens: int, now: float) -> None:
        if call.chunks == 1:
            histograms = self._bucket().ttft_ms
            ms = (now - call.arrived_at) * 1000
            for key in (call.request_class, ALL):
                histogram = histograms.get(key)
                if histogram is None:
                    histogram = histograms[key] = LogHistogram()
                histogram.add(ms)

    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        bucket = self._bucket()
        tier = call.replica.record.tier
        bucket.outcomes[(call.request_class, tier, outcome.label)] += 1
        if outcome.answered:
            bucket.answered += 1
            bucket.tokens_by_tier[tier] += call.tokens
        elif outcome.label == "cancelled":
            bucket.cancelled += 1
        else:
            bucket.failed_calls += 1
            if outcome.label != FULL:  # a full replica's request goes elsewhere: a refusal is noted if none took it
                detail = call.abandoned or f"{outcome.label} after {call.tokens} tokens"
                self._note_failure(call.replica.replica_id, tier, call.request_class, outcome.label, detail)


def merged_ttft(buckets: Iterable[MinuteBucket]) -> dict[str, LogHistogram]:
    merged: dict[str, LogHistogram] = {}
    for bucket in buckets:
        for key, histogram in bucket.ttft_ms.items():
            merged.setdefault(key, LogHistogram()).merge(histogram)
    return merged
