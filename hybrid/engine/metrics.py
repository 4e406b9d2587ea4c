"""Prometheus metrics of a replica. Each server gets its own registry, so several can share a process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ReplicaMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, prefix: str = "hybrid_replica"):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(f"{prefix}_requests", "Requests by outcome.", ["outcome"], registry=r)
        self.rejected = Counter(
            f"{prefix}_rejected", "Requests refused before compute, by gRPC status.", ["code"], registry=r
        )
        self.tokens = Counter(f"{prefix}_generated_tokens", "Tokens generated.", registry=r)
        self.queue_depth = Gauge(f"{prefix}_queue_depth", "Requests waiting for a batch slot.", registry=r)
        self.active = Gauge(f"{prefix}_active_sequences", "Sequences being decoded.", registry=r)
        self.capacity = Gauge(f"{prefix}_capacity", "Sequences decoded at once at most.", registry=r)
        self.queue_seconds = Histogram(
            f"{prefix}_queue_seconds",
            "Time from arrival to the start of compute.",
            ["priority"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft_seconds = Histogram(
            f"{prefix}_time_to_first_token_seconds", "Arrival to first token.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.prefill_seconds = Histogram(
            f"{prefix}_prefill_seconds", "Duration of one prefill.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.step_seconds = Histogram(
            f"{prefix}_decode_step_seconds", "Duration of one decode step.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.batch_rows = Histogram(
            f"{prefix}_decode_batch_rows",
            "Sequences sharing a decode step.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.gc_pause_seconds = Histogram(
            f"{prefix}_gc_pause_seconds",
            "Pauses of the whole process for a garbage collection while it serves, by generation: every stream "
            "stops for them.",
            ["generation"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r,
        )
