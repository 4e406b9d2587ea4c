"""The router's Prometheus metrics; a call hook (``hybrid.router.ledger.CallHooks``) for the per-call ones."""

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
        self.replicas = Gauge("hybrid_router_replicas", "Known replicas by tier.", ["tier"], registry=r)
        self.discovery_staleness = Gauge(
            "hybrid_router_discovery_staleness_seconds", "Seconds since discovery last answered.", registry=r
        )
        self.discovery_healthy = Gauge(
            "hybrid_router_discovery_healthy",
            "1 while discovery answers; 0 while serving from the last view.",
            registry=r,
        )

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
        self.requests.labels("none", decision.request_class.value, "refused").inc()

    def observe_discovery(self, healthy: bool, staleness_s: float, replicas: list[ReplicaState]) -> None:
        self.discovery_healthy.set(1 if healthy else 0)
        self.discovery_staleness.set(min(staleness_s, 1e9))
        for tier in ("edge", "private", "public"):
            self.replicas.labels(tier).set(sum(1 for r in replicas if r.record.tier == tier))

    def ejected(self, replica: ReplicaState) -> None:
        self.ejections.labels(replica.record.tier).inc()

    # --- CallHooks ---
    def chunk(self, call: Call, tokens: int, now: float) -> None:
        if call.chunks == 1:
            self.ttft.labels(call.replica.record.tier, call.request_class).observe(now - call.arrived_at)

    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        tier = call.replica.record.tier
        self.requests.labels(tier, call.request_class, outcome.label).inc()
        self.latency.labels(tier, call.request_class).observe(now - call.arrived_at)
