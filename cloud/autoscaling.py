"""A Ray Serve autoscaling policy that follows the router's scaling signal.

The router exports each tier's desired replica count (``hybrid_router_tier_desired_replicas{tier}``, see
``hybrid.router.scaling``): it sees a burst before any replica queues it, and forecasts the arrival rate ahead.
``RouterSignalPolicy`` reads that gauge from the Prometheus that scrapes the router, through Serve's own
``PrometheusQueryMixin`` (a background fetch; a read never waits on the network), and asks for the larger of
the router's count and what Serve's default policy (ongoing requests per replica) asks. Where the signal cannot
be read (no Prometheus, no router scraped, a stale answer) it falls back to Serve's default alone, so the tier
never scales on nothing. Serve then applies the deployment's ``min_replicas``, ``max_replicas`` and delays.

The cloud tier's Serve config names it when ``hybrid cloud config --router-prometheus URL`` is given
(``cloud.serve_config``).
"""

from __future__ import annotations

from typing import Any

from ray.serve.autoscaling_policy import PrometheusQueryMixin, replica_queue_length_autoscaling_policy

POLICY_IMPORT_PATH = "cloud.autoscaling:RouterSignalPolicy"
SIGNAL_METRIC = "hybrid_router_tier_desired_replicas"


def desired_replicas_query(tier: str) -> str:
    """The PromQL that reads the tier's signal: the largest of the routers' counts, where several routers run."""
    return f'max({SIGNAL_METRIC}{{tier="{tier}"}})'


class RouterSignalPolicy(PrometheusQueryMixin):
    """Serve's custom autoscaling policy (a class: Serve builds it once with ``policy_kwargs``, then calls it)."""

    def __init__(
        self,
        tier: str,
        prometheus_address: str | None = None,
        fetch_interval_s: float = 5.0,
        cache_ttl_s: float = 15.0,
    ):
        self.tier = tier
        self.query = desired_replicas_query(tier)
        super().__init__(
            prometheus_address=prometheus_address,
            prometheus_queries=[self.query],
            fetch_interval_s=fetch_interval_s,
            cache_ttl_s=cache_ttl_s,
        )

    def router_signal(self) -> float | None:
        """The router's desired count for the tier, or None while it cannot be read."""
        return (self.prometheus_metrics or {}).get(self.query)

    def __call__(self, ctx) -> tuple[float, dict[str, Any]]:
        own, state = replica_queue_length_autoscaling_policy(ctx)
        signal = self.router_signal()
        if signal is None:
            return own, state
        return max(own, signal), state
