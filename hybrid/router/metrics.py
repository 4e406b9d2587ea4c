"""The router's Prometheus metrics; a call hook (``hybrid.router.ledger.CallHooks``) for the per-call ones.

Where the router runs as several worker processes (``hybrid.router.workers``), prometheus_client's
multiprocess mode sums the counters and histograms over the workers; each gauge says how its workers'
values combine (``multiprocess_mode``), and is ignored by a single process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hybrid.router.ledger import Call, CallHooks, Outcome
from hybrid.router.policy.policy import Decision
from hybrid.router.policy.replica import ReplicaState

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RouterMetrics(CallHooks):
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "hybrid_router_requests",
            "Requests by tier, class and outcome.",
            ["tier", "request_class", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "hybrid_router_request_seconds",
            "Arrival to last chunk.",
            ["tier", "request_class"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "hybrid_router_time_to_first_token_seconds",
            "Arrival to first chunk.",
            ["tier", "request_class"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.spillovers = Counter(
            "hybrid_router_spillovers",
            "Requests served by a later tier than their first choice.",
            ["from_tier", "to_tier"],
            registry=r,
        )
        self.retries = Counter(
            "hybrid_router_retries", "Requests resent after a replica failed before its first token.", registry=r
        )
        self.ejections = Counter("hybrid_router_ejections", "Replicas ejected as outliers.", ["tier"], registry=r)
        # Every worker watches the same discovery: the most any of them knows, the stalest, the least healthy.
        self.replicas = Gauge(
            "hybrid_router_replicas", "Known replicas by tier.", ["tier"], registry=r, multiprocess_mode="livemax"
        )
        self.discovery_staleness = Gauge(
            "hybrid_router_discovery_staleness_seconds",
            "Seconds since discovery last answered.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.discovery_healthy = Gauge(
            "hybrid_router_discovery_healthy",
            "1 while discovery answers; 0 while serving from the last view.",
            registry=r,
            multiprocess_mode="livemin",
        )
        # One series per worker process (a pid label) where there are several: how evenly the kernel spreads them.
        self.calls_seen = Gauge(
            "hybrid_router_worker_calls",
            "Calls to replicas this router process has seen end.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self._calls_ended = 0
        self._ttft: dict[tuple[str, str], Histogram] = {}
        self._latency: dict[tuple[str, str], Histogram] = {}
        self._requests: dict[tuple[str, str, str], Counter] = {}

    def routed(self, decision: Decision, attempt: int) -> None:
        """A replica was chosen for the ``attempt``-th time (0 for the first) for one request."""
        if decision.chosen is None:
            return
        first_choice = decision.tier_order[0].name.lower()
        if decision.chosen.record.tier != first_choice:
            self.spillovers.labels(first_choice, decision.chosen.record.tier).inc()
        if attempt:
            self.retries.inc()

    def refused(self, decision: Decision) -> None:
        outcome = "refused" if decision.impossible_ms is None else "impossible_deadline"
        self.requests.labels("none", decision.request_class.value, outcome).inc()

    def observe_discovery(self, healthy: bool, staleness_s: float, replicas: list[ReplicaState]) -> None:
        self.discovery_healthy.set(1 if healthy else 0)
        self.discovery_staleness.set(min(staleness_s, 1e9))
        for tier in ("edge", "private", "public"):
            self.replicas.labels(tier).set(sum(1 for r in replicas if r.record.tier == tier))
        self.calls_seen.set(self._calls_ended)

    def ejected(self, replica: ReplicaState) -> None:
        self.ejections.labels(replica.record.tier).inc()

    # --- CallHooks ---
    # The labelled children are looked up once per label set: prometheus_client's labels() costs more than a call's
    # whole bookkeeping otherwise.
    def chunk(self, call: Call, tokens: int, now: float) -> None:
        if call.chunks == 1:
            key = (call.replica.record.tier, call.request_class)
            child = self._ttft.get(key)
            if child is None:
                child = self._ttft[key] = self.ttft.labels(*key)
            child.observe(now - call.arrived_at)

    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        self._calls_ended += 1
        key = (call.replica.record.tier, call.request_class)
        counted = self._requests.get((*key, outcome.label))
        if counted is None:
            counted = self._requests[(*key, outcome.label)] = self.requests.labels(*key, outcome.label)
        counted.inc()
        timed = self._latency.get(key)
        if timed is None:
            timed = self._latency[key] = self.latency.labels(*key)
        timed.observe(now - call.arrived_at)
