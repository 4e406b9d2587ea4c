"""Routing policy: which tier and which replica serve a request (DESIGN "Tiers and routing").

Plain objects with an injectable clock and random source, tested without sockets; the router's
gRPC server is a thin shell around them.

* ``HotnessTracker``: a bounded heavy-hitter sketch (Space-Saving) over a sliding window of time
  buckets decides which affinity keys or prompt prefixes are hot.
* ``OutlierDetector``: a replica that fails repeatedly is ejected for a while, longer each time, in
  the manner of Envoy's outlier detection, never more than half of a tier at once.
* ``RoutingPolicy``: classifies a request, orders the tiers by the routing table, and picks a
  replica with room by power-of-two-choices on least outstanding requests, weighted by capacity.
  Every decision carries its reasons.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from hybrid import constants
from hybrid.discovery import ReplicaRecord
from hybrid.engine.pace import Pace
from hybrid.engine.window import RecentWindow
from hybrid.protocol import GenerationRequest, Priority, Tier

# Precisions that count as full for min_precision FULL.
FULL_PRECISIONS = frozenset({"fp32", "fp16", "bf16"})


class RequestClass(str, Enum):
    REALTIME = "REALTIME"
    HOT = "hot"
    COLD_INTERACTIVE = "cold INTERACTIVE"
    BATCH = "BATCH"


@dataclass
class Call:
    """One request the router sent to a replica and has not yet seen end."""

    began: float
    # When its caller stops waiting, on the clock ``began`` is on; None for no deadline.
    deadline: float | None
    max_new_tokens: int
    first_token_at: float | None = None
    tokens: int = 0

    def tokens_left(self) -> int:
        return max(1, self.max_new_tokens - self.tokens)


@dataclass
class ReplicaState:
    """What the router knows of one replica: discovery's record plus live figures."""

    record: ReplicaRecord
    # Last reported by the replica (GetLoad).
    queue_depth: int = 0
    active: int = 0
    mean_request_ms: float = 0.0
    recent_ttft_p90_ms: float = 0.0
    # How its time between tokens grows with its batch, as it reported.
    pace: Pace = field(default_factory=Pace)
    # Round-trip time, exponentially weighted.
    rtt_ms: float | None = None
    consecutive_failures: int = 0
    ejected_until: float = 0.0
    ejections: int = 0
    # The router's own view of its calls to this replica: each call in flight (its deadline, its first
    # token, the tokens come so far), and how long each token after the first took in the calls that
    # finished well lately. A replica's batch size says nothing of its speed (a CPU node with 32 slots may
    # take 50 ms a token); these say what a request sent now meets, and scale with the tokens it asks for.
    in_flight: dict[int, Call] = field(default_factory=dict)
    recent_token_ms: RecentWindow = field(default_factory=lambda: RecentWindow(constants.ROUTING_RECENT_WINDOW_S))
    _next_call: int = 0

    @property
    def tier(self) -> Tier:
        return Tier.parse(self.record.tier)

    @property
    def full_precision(self) -> bool:
        return self.record.precision in FULL_PRECISIONS

    @property
    def outstanding(self) -> int:
        """Requests the router has sent here and not yet seen end."""
        return len(self.in_flight)

    def begin_call(self, now: float, deadline: float | None = None, max_new_tokens: int = 1) -> int:
        self._next_call += 1
        self.in_flight[self._next_call] = Call(now, deadline, max_new_tokens)
        return self._next_call

    def streamed(self, call: int, now: float, tokens: int) -> None:
        """A message of the call's answer came, with ``tokens`` tokens."""
        state = self.in_flight[call]
        if state.first_token_at is None:
            state.first_token_at = now
        state.tokens += tokens

    def end_call(self, call: int, now: float, answered: bool) -> None:
        state = self.in_flight.pop(call)
        if answered and state.first_token_at is not None and state.tokens > 1:
            self.recent_token_ms.add(now, (now - state.first_token_at) * 1000 / (state.tokens - 1))

    def oldest_awaiting_first_token_ms(self, now: float) -> float:
        """How long the oldest call in flight without its first token has waited; 0 when none."""
        return max(
            ((now - c.began) * 1000 for c in self.in_flight.values() if c.first_token_at is None),
            default=0.0,
        )

    def answers_put_at_risk(self, now: float) -> int:
        """Calls in flight here that one more request would leave expected to end past ``ROUTING_DEADLINE_HEADROOM``
        of their remaining time: each new row slows every row of a CPU's batch, and an answer promised in time
        when it was sent must stay so."""
        token_ms = self.predicted_token_ms(now)
        return sum(
            1
            for c in self.in_flight.values()
            if c.deadline is not None
            and c.tokens_left() * token_ms > constants.ROUTING_DEADLINE_HEADROOM * (c.deadline - now) * 1000
        )

    def observe_rtt(self, rtt_ms: float, alpha: float = 0.2) -> None:
        self.rtt_ms = rtt_ms if self.rtt_ms is None else (1 - alpha) * self.rtt_ms + alpha * rtt_ms

    def load(self) -> int:
        """Requests ahead of a new one: what it reported waiting or running, or what we sent, whichever is more."""
        return max(self.queue_depth + self.active, self.outstanding)

    def predicted_wait_ms(self) -> float:
        """Queue wait before a new request starts: zero while a batch slot is free."""
        capacity = max(1, self.record.capacity)
        waiting = self.load() - capacity + 1
        if waiting <= 0:
            return 0.0
        per_request = self.mean_request_ms or constants.ROUTING_DEFAULT_REQUEST_MS
        return waiting / capacity * per_request

    def predicted_start_ms(self) -> float:
        """When a request sent now would start here: the network's round trip plus the queue's wait."""
        return (self.rtt_ms or 0.0) + self.predicted_wait_ms()

    def predicted_ttft_ms(self, now: float) -> float:
        """When its first token would arrive: the start plus what first tokens take here now — the 90th
        percentile the replica reports of its last seconds, or longer where a call of ours has waited longer."""
        return self.predicted_start_ms() + max(self.recent_ttft_p90_ms, self.oldest_awaiting_first_token_ms(now))

    def predicted_token_ms(self, now: float) -> float:
        """What each token after the first would take: the replica's pace at its batch with this request in it,
        or the 90th percentile of what a token took in our calls that ended lately, whichever is slower.

        The pace sees a burst coming the moment requests pile up on a replica, before any of them ends; the
        calls see what the pace leaves out (the network, the proxies in the path)."""
        rows = min(max(1, self.record.capacity), self.load() + 1)
        return max(self.pace.token_ms(rows), self.recent_token_ms.quantile(now, 0.9))

    def predicted_finish_ms(self, now: float, new_tokens: int) -> float:
        """When an answer of ``new_tokens`` would end: its first token, then the rest at the predicted pace."""
        return self.predicted_ttft_ms(now) + (new_tokens - 1) * self.predicted_token_ms(now)


class HotnessTracker:
    """Space-Saving heavy hitters per time bucket; a key is hot when its count over the window is high."""

    def __init__(
        self,
        window_s: float = constants.HOTNESS_WINDOW_S,
        buckets: int = constants.HOTNESS_BUCKETS,
        capacity: int = constants.HOTNESS_CAPACITY,
        hot_count: int = constants.HOT_COUNT,
        clock: Callable[[], float] = time.monotonic,
    ):
        if buckets < 1 or capacity < 1 or window_s <= 0:
            raise ValueError("window_s, buckets and capacity must be positive")
        self.bucket_s = window_s / buckets
        self.buckets = buckets
        self.capacity = capacity
        self.hot_count = hot_count
        self._clock = clock
        # bucket index -> {key: [count, overestimate]}; each bucket holds at most `capacity` keys.
        self._counts: dict[int, dict[str, list[int]]] = {}

    def _bucket(self) -> int:
        return int(self._clock() // self.bucket_s)

    def _expire(self, current: int) -> None:
        for index in [i for i in self._counts if i <= current - self.buckets]:
            del self._counts[index]

    def record(self, key: str) -> None:
        if not key:
            return
        current = self._bucket()
        self._expire(current)
        counts = self._counts.setdefault(current, {})
        if key in counts:
            counts[key][0] += 1
        elif len(counts) < self.capacity:
            counts[key] = [1, 0]
        else:
            # Space-Saving: the new key takes the place of the least counted one and inherits its count,
            # remembered as an overestimate so that it cannot make a one-off key look hot.
            smallest = min(counts, key=lambda k: counts[k][0])
            inherited = counts.pop(smallest)[0]
            counts[key] = [inherited + 1, inherited]

    def count(self, key: str) -> int:
        """A lower bound of the key's requests in the window."""
        self._expire(self._bucket())
        return sum(bucket[key][0] - bucket[key][1] for bucket in self._counts.values() if key in bucket)

    def is_hot(self, key: str) -> bool:
        return bool(key) and self.count(key) >= self.hot_count

    def tracked_keys(self) -> int:
        return sum(len(bucket) for bucket in self._counts.values())


class OutlierDetector:
    """Ejects a replica after ``max_failures`` consecutive failures, for base_s x times ejected (capped)."""

    def __init__(
        self,
        max_failures: int = constants.OUTLIER_MAX_FAILURES,
        base_ejection_s: float = constants.OUTLIER_BASE_EJECTION_S,
        max_ejection_s: float = constants.OUTLIER_MAX_EJECTION_S,
        max_ejected_fraction: float = constants.OUTLIER_MAX_EJECTED_FRACTION,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_failures = max_failures
        self.base_ejection_s = base_ejection_s
        self.max_ejection_s = max_ejection_s
        self.max_ejected_fraction = max_ejected_fraction
        self._clock = clock

    def ejected(self, replica: ReplicaState) -> bool:
        return replica.ejected_until > self._clock()

    def record_success(self, replica: ReplicaState) -> None:
        replica.consecutive_failures = 0

    def record_failure(self, replica: ReplicaState, tier_peers: list[ReplicaState]) -> bool:
        """Counts a failure; returns True when this one ejected the replica."""
        replica.consecutive_failures += 1
        if replica.consecutive_failures < self.max_failures or self.ejected(replica):
            return False
        ejected_peers = sum(1 for peer in tier_peers if self.ejected(peer))
        if ejected_peers + 1 > max(1, int(len(tier_peers) * self.max_ejected_fraction)):
            return False  # ejecting more would leave the tier too thin; keep sending, keep counting
        replica.ejections += 1
        replica.ejected_until = self._clock() + min(self.max_ejection_s, self.base_ejection_s * replica.ejections)
        replica.consecutive_failures = 0
        return True


@dataclass
class _Expectation:
    """What a replica must be expected to do for a request, e.g. its first token within 250 ms."""

    wanted: str
    # What the replica is expected to give, and the most that passes, e.g. "first token", 250, "ms".
    measure: str
    predicted: Callable[[ReplicaState], float]
    limit: float
    unit: str = " ms"

    def met(self, replica: ReplicaState) -> bool:
        return self.predicted(replica) <= self.limit

    def expected(self, replica: ReplicaState) -> str:
        return f"{self.measure} {self.predicted(replica):.0f}{self.unit}"


def _within(measure: str, predicted: Callable[[ReplicaState], float], limit_ms: float) -> _Expectation:
    return _Expectation(f"{measure} within {limit_ms:.0f} ms", measure, predicted, limit_ms)


@dataclass
class Decision:
    request_class: RequestClass
    tier_order: list[Tier]
    chosen: ReplicaState | None
    reasons: list[str] = field(default_factory=list)
    # With no replica chosen: when trying again may succeed.
    retry_after_ms: int = 0


class RoutingPolicy:
    def __init__(
        self,
        hotness: HotnessTracker | None = None,
        outliers: OutlierDetector | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        realtime_ttft_ms: float = constants.ROUTING_REALTIME_TTFT_MS,
    ):
        self.hotness = hotness or HotnessTracker(clock=clock)
        self.outliers = outliers or OutlierDetector(clock=clock)
        self.realtime_ttft_ms = realtime_ttft_ms
        self._rng = rng or random.Random()
        self._clock = clock

    @staticmethod
    def hotness_key(request: GenerationRequest) -> str:
        if request.affinity_key:
            return "key:" + request.affinity_key
        text = request.prompt if request.prompt is not None else "".join(m["content"] for m in request.messages or [])
        return "prefix:" + text[: constants.HOTNESS_PREFIX_CHARS]

    def observe(self, request: GenerationRequest) -> None:
        """Counts a request toward hotness; call once per request actually routed."""
        self.hotness.record(self.hotness_key(request))

    def classify(self, request: GenerationRequest) -> RequestClass:
        if request.priority == Priority.REALTIME:
            return RequestClass.REALTIME
        if self.hotness.is_hot(self.hotness_key(request)):
            return RequestClass.HOT
        if request.priority == Priority.BATCH:
            return RequestClass.BATCH
        return RequestClass.COLD_INTERACTIVE

    @staticmethod
    def tier_order(request_class: RequestClass, replicas: Iterable[ReplicaState]) -> list[Tier]:
        if request_class == RequestClass.REALTIME:
            # Nearest first, by the best measured RTT among each tier's replicas; unmeasured tiers last.
            best: dict[Tier, float] = {}
            for replica in replicas:
                rtt = replica.rtt_ms if replica.rtt_ms is not None else float("inf")
                best[replica.tier] = min(best.get(replica.tier, float("inf")), rtt)
            default = [Tier.EDGE, Tier.PRIVATE, Tier.PUBLIC]
            return sorted(default, key=lambda tier: (best.get(tier, float("inf")), default.index(tier)))
        if request_class == RequestClass.HOT:
            return [Tier.EDGE, Tier.PRIVATE, Tier.PUBLIC]
        if request_class == RequestClass.COLD_INTERACTIVE:
            return [Tier.PRIVATE, Tier.PUBLIC, Tier.EDGE]
        return [Tier.PUBLIC, Tier.PRIVATE]

    def choose(
        self, request: GenerationRequest, replicas: list[ReplicaState], exclude: frozenset[str] = frozenset()
    ) -> Decision:
        """Picks a replica, or none with a retry hint; ``exclude`` holds replicas that already failed this request.

        Tiers are tried in the table's order, in up to three passes, each less demanding than the one before:

        1. REALTIME only: a replica expected to give the first token within ``ROUTING_TTFT_HEADROOM`` of
           ``realtime_ttft_ms`` and to meet what pass 2 asks;
        2. one expected to finish (``max_new_tokens`` at the pace it would have with this request in its
           batch, or at what a token took in the router's calls lately if slower) within
           ``ROUTING_DEADLINE_HEADROOM`` of the deadline, without leaving any answer the router has in flight
           there expected to end past that share of its own deadline. A REALTIME request, which no tier
           could give its first token in time, takes the soonest expected first token of any such replica
           instead of the nearest tier's;
        3. one that can at least start it within the deadline.

        Only where no replica passes even the last is the request refused."""
        request_class = self.classify(request)
        order = self.tier_order(request_class, replicas)
        decision = Decision(request_class, order, None)
        remaining = request.remaining_s()
        budget_ms = constants.ROUTING_DEFAULT_BUDGET_MS if remaining is None else remaining * 1000
        decision.reasons.append(
            f"class {request_class.value}; tiers in order: {', '.join(t.name.lower() for t in order)}"
        )
        candidates = self._candidates(request, replicas, exclude, order, decision.reasons)
        now = self._clock()
        finish = _within(
            "finish",
            lambda r: r.predicted_finish_ms(now, request.max_new_tokens),
            budget_ms * constants.ROUTING_DEADLINE_HEADROOM,
        )
        no_harm = _Expectation(
            "no answer in flight put past its deadline",
            "answers put at risk",
            lambda r: r.answers_put_at_risk(now),
            0,
            "",
        )
        realtime = request_class == RequestClass.REALTIME
        if realtime and self.realtime_ttft_ms < budget_ms:
            first_token = _within(
                "first token",
                lambda r: r.predicted_ttft_ms(now),
                self.realtime_ttft_ms * constants.ROUTING_TTFT_HEADROOM,
            )
            decision.chosen = self._first_with_room(candidates, [first_token, finish, no_harm], decision.reasons)
        if decision.chosen is None and realtime:
            decision.chosen = self._soonest_first_token(candidates, [finish, no_harm], now, decision.reasons)
        if decision.chosen is None and not realtime:
            decision.chosen = self._first_with_room(candidates, [finish, no_harm], decision.reasons)
        if decision.chosen is None:
            start = _within("start", ReplicaState.predicted_start_ms, budget_ms)
            decision.chosen = self._first_with_room(candidates, [start], decision.reasons)
        if decision.chosen is not None:
            return decision
        starts = [r.predicted_start_ms() for members in candidates.values() for r in members]
        shortest = min(starts, default=float("inf"))
        decision.retry_after_ms = int(max(100.0, shortest - budget_ms if shortest < float("inf") else 1000.0))
        decision.reasons.append("no tier has room: RESOURCE_EXHAUSTED")
        return decision

    def _candidates(
        self,
        request: GenerationRequest,
        replicas: list[ReplicaState],
        exclude: frozenset[str],
        order: list[Tier],
        reasons: list[str],
    ) -> dict[Tier, list[ReplicaState]]:
        """The replicas each tier (in order) may use for this request; says why a tier has none."""
        usable_by_tier: dict[Tier, list[ReplicaState]] = {}
        for tier in order:
            name = tier.name.lower()
            members = [r for r in replicas if r.tier == tier and r.record.model == (request.model or r.record.model)]
            if not members:
                reasons.append(f"{name}: no replica of this model")
                continue
            if request.require_full_precision and tier == Tier.EDGE and not any(r.full_precision for r in members):
                reasons.append(f"{name}: skipped, min_precision FULL and its replicas are quantized")
                continue
            usable = [
                r
                for r in members
                if r.record.id not in exclude
                and not self.outliers.ejected(r)
                and (r.full_precision or not request.require_full_precision)
            ]
            if len(usable) < len(members):
                reasons.append(
                    f"{name}: {len(members) - len(usable)} replica(s) ejected, excluded or below min_precision"
                )
            usable_by_tier[tier] = usable
        return usable_by_tier

    def _first_with_room(
        self, candidates: dict[Tier, list[ReplicaState]], expectations: list[_Expectation], reasons: list[str]
    ) -> ReplicaState | None:
        """One replica of the first tier (in order) whose replicas meet every expectation; None if no tier's do."""
        wanted = " and ".join(e.wanted for e in expectations)
        for tier, usable in candidates.items():
            name = tier.name.lower()
            with_room = [r for r in usable if all(e.met(r) for e in expectations)]
            if not with_room:
                best = (
                    ", ".join(f"best expected {e.expected(min(usable, key=e.predicted))}" for e in expectations)
                    if usable
                    else "no usable replica"
                )
                reasons.append(f"{name}: no room for a {wanted} ({best}); spilling over")
                continue
            chosen = self._two_choices(with_room)
            expected = ", ".join(e.expected(chosen) for e in expectations)
            reasons.append(
                f"{name}: {len(with_room)} of {len(usable)} usable replicas expect a {wanted}; power of two choices "
                f"picked {chosen.record.id} (load {chosen.load()}/{chosen.record.capacity}, expected {expected})"
            )
            return chosen
        return None

    def _soonest_first_token(
        self,
        candidates: dict[Tier, list[ReplicaState]],
        expectations: list[_Expectation],
        now: float,
        reasons: list[str],
    ) -> ReplicaState | None:
        """Of every tier's replicas that meet the expectations, the one whose first token is expected soonest."""
        wanted = " and ".join(e.wanted for e in expectations)
        meeting = [r for usable in candidates.values() for r in usable if all(e.met(r) for e in expectations)]
        if not meeting:
            reasons.append(f"no replica of any tier expects a {wanted}")
            return None
        chosen = min(meeting, key=lambda r: (r.predicted_ttft_ms(now), r.load() / max(1, r.record.capacity)))
        expected = ", ".join(e.expected(chosen) for e in expectations)
        reasons.append(
            f"{chosen.record.tier}: {chosen.record.id} has the soonest expected first token "
            f"({chosen.predicted_ttft_ms(now):.0f} ms) of the {len(meeting)} replicas of any tier that expect a "
            f"{wanted} (load {chosen.load()}/{chosen.record.capacity}, expected {expected})"
        )
        return chosen

    def _two_choices(self, candidates: list[ReplicaState]) -> ReplicaState:
        if len(candidates) == 1:
            return candidates[0]
        weights = [max(1, c.record.capacity) for c in candidates]
        first, second = self._rng.choices(candidates, weights=weights, k=2)
        if first is second:
            second = self._rng.choice([c for c in candidates if c is not first])

        def relative_load(replica: ReplicaState) -> float:
            return replica.load() / max(1, replica.record.capacity)

        return min((first, second), key=relative_load)
