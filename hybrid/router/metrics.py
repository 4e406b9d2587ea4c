"""The router's Prometheus metrics; a call hook (``hybrid.router.ledger.CallHooks``) for the per-call ones.

Where the router runs as several worker processes (``hybrid.router.workers``), prometheus_client's
multiprocess mode sums the counters and histograms over the workers; each gauge says how its workers'
values combine (``multiprocess_mode``), and is ignored by a single process.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hybrid.router.ledger import Call, CallHooks, CallLedger, Outcome, refusal
from hybrid.router.policy.policy import Decision
from hybrid.router.policy.replica import ReplicaState

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TIERS = ("edge", "private", "public")
# What the router knows of each replica from discovery and its last load report, one series per replica.
_REPLICA_LABELS = ["tier", "replica"]


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
        self.tokens = Counter(
            "hybrid_router_generated_tokens", "Tokens streamed back to callers, by tier.", ["tier"], registry=r
        )
        self.tier_free_slots = Gauge(
            "hybrid_router_tier_free_slots",
            "Batch slots free in a tier's serving replicas (not ejected, not draining), after their queues.",
            ["tier"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self._replica_gauges()
        self._replica_labels: set[tuple[str, str]] = set()
        self._calls_ended = 0
        self._tokens: dict[str, Counter] = {}
        self._ttft: dict[tuple[str, str], Histogram] = {}
        self._latency: dict[tuple[str, str], Histogram] = {}
        self._requests: dict[tuple[str, str, str], Counter] = {}

    def _replica_gauges(self) -> None:
        r = self.registry

        def gauge(name: str, documentation: str, mode: str = "livemax") -> Gauge:
            return Gauge(name, documentation, _REPLICA_LABELS, registry=r, multiprocess_mode=mode)

        self.replica_queue = gauge("hybrid_router_replica_queue_depth", "Requests waiting at the replica, as it said.")
        self.replica_active = gauge("hybrid_router_replica_active", "Sequences the replica decodes, as it said.")
        self.replica_capacity = gauge("hybrid_router_replica_capacity", "Sequences the replica decodes at once at most.")
        self.replica_outstanding = gauge(
            "hybrid_router_replica_outstanding", "Calls the router has open at the replica.", mode="livesum"
        )
        self.replica_ejected = gauge("hybrid_router_replica_ejected", "1 while the replica is ejected as an outlier.")
        self.replica_draining = gauge("hybrid_router_replica_draining", "1 while the replica drains (takes no work).")
        self.replica_cost = gauge(
            "hybrid_router_replica_cost_per_hour", "What the replica costs an hour, as discovery lists it."
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
        outcome, _ = refusal(decision)
        self.requests.labels("none", decision.request_class.value, outcome).inc()

    def observe_discovery(
        self,
        healthy: bool,
        staleness_s: float,
        replicas: list[ReplicaState],
        ejected: Callable[[ReplicaState], bool] = lambda replica: False,
        ledger: CallLedger | None = None,
    ) -> None:
        """Discovery's state and every replica's, as the router sees them now; ``ejected`` says which replicas
        the outlier detector holds out, ``ledger`` the calls open at each."""
        self.discovery_healthy.set(1 if healthy else 0)
        self.discovery_staleness.set(min(staleness_s, 1e9))
        free = dict.fromkeys(TIERS, 0)
        for tier in TIERS:
            self.replicas.labels(tier).set(sum(1 for r in replicas if r.record.tier == tier))
        seen = set()
        for replica in replicas:
            labels = (replica.record.tier, replica.replica_id)
            seen.add(labels)
            held_out = ejected(replica)
            self.replica_queue.labels(*labels).set(replica.queue_depth)
            self.replica_active.labels(*labels).set(replica.active)
            self.replica_capacity.labels(*labels).set(replica.capacity)
            self.replica_outstanding.labels(*labels).set(ledger.outstanding(replica.replica_id) if ledger else 0)
            self.replica_ejected.labels(*labels).set(1 if held_out else 0)
            self.replica_draining.labels(*labels).set(1 if replica.draining else 0)
            self.replica_cost.labels(*labels).set(replica.record.cost_per_hour)
            if not held_out and not replica.draining and replica.record.tier in free:
                free[replica.record.tier] += max(0, replica.capacity - replica.active - replica.queue_depth)
        for tier, slots in free.items():
            self.tier_free_slots.labels(tier).set(slots)
        for labels in self._replica_labels - seen:  # left discovery: its series end with it
            for gauge in (
                self.replica_queue,
                self.replica_active,
                self.replica_capacity,
                self.replica_outstanding,
                self.replica_ejected,
                self.replica_draining,
                self.replica_cost,
            ):
                gauge.remove(*labels)
        self._replica_labels = seen
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
        if call.tokens:
            tier = call.replica.record.tier
            streamed = self._tokens.get(tier)
            if streamed is None:
                streamed = self._tokens[tier] = self.tokens.labels(tier)
            streamed.inc(call.tokens)
