"""Serve's custom autoscaling policy on the router's scaling signal, and the Serve config that names it.

No Ray cluster and no Prometheus: the policy is called with a context made by hand, and the signal it would
have fetched is set on its cache."""

from __future__ import annotations

import time

import pytest
from ray.serve.config import AutoscalingConfig

from cloud.autoscaling import POLICY_IMPORT_PATH, RouterSignalPolicy, desired_replicas_query
from cloud.config import DeploymentSettings, ReplicaSettings
from cloud.serve_config import load_serve_config, serve_config

SETTINGS = ReplicaSettings(tier="private", region="eu-west", precision="bf16")
DEPLOYMENT = DeploymentSettings(min_replicas=1, max_replicas=8, target_ongoing_requests=4, num_gpus=0)


class Context:
    """What the policy reads of Serve's AutoscalingContext."""

    def __init__(self, replicas: int, ongoing: float):
        self.current_num_replicas = replicas
        self.target_num_replicas = replicas
        self.total_num_requests = ongoing
        self.policy_state: dict = {}
        self.config = AutoscalingConfig(min_replicas=1, max_replicas=8, target_ongoing_requests=4)


def with_signal(policy: RouterSignalPolicy, value: float | None) -> RouterSignalPolicy:
    policy._started = True  # no fetch thread: the test fills the cache itself
    if value is not None:
        with policy._cache.lock:
            policy._cache.results = {policy.query: _scalar(value)}
            policy._cache.timestamp = time.monotonic()
    return policy


def _scalar(value: float):
    from ray.serve.autoscaling_policy import PrometheusScalar

    return PrometheusScalar(value=value, timestamp=time.time())


def test_the_query_reads_the_routers_gauge_for_the_tier():
    assert desired_replicas_query("public") == 'max(hybrid_router_tier_desired_replicas{tier="public"})'


def test_the_router_signal_raises_the_count_ahead_of_servers_own_measure():
    policy = with_signal(RouterSignalPolicy("private", "http://prometheus.invalid"), 6)
    desired, _ = policy(Context(replicas=2, ongoing=8))  # Serve's own: 8 ongoing / 4 per replica = 2
    assert desired == 6


def test_serves_own_measure_wins_where_it_asks_more():
    policy = with_signal(RouterSignalPolicy("private", "http://prometheus.invalid"), 1)
    desired, _ = policy(Context(replicas=2, ongoing=20))
    assert desired == pytest.approx(5)


def test_without_a_signal_the_policy_is_serves_default():
    policy = with_signal(RouterSignalPolicy("private", "http://prometheus.invalid"), None)
    assert policy.router_signal() is None
    desired, _ = policy(Context(replicas=2, ongoing=12))
    assert desired == pytest.approx(3)


def test_the_serve_config_names_the_policy_only_when_given_the_routers_prometheus():
    plain = serve_config(SETTINGS, DEPLOYMENT, "private-eu")
    assert "policy" not in plain["applications"][0]["deployments"][0]["autoscaling_config"]
    document = serve_config(SETTINGS, DEPLOYMENT, "private-eu", router_prometheus="http://prometheus:9090")
    scaling = document["applications"][0]["deployments"][0]["autoscaling_config"]
    assert scaling["policy"] == {
        "policy_function": POLICY_IMPORT_PATH,
        "policy_kwargs": {"tier": "private", "prometheus_address": "http://prometheus:9090"},
    }
    [tier] = load_serve_config(document)  # Ray's schema imports and pickles the policy: it must be importable
    assert tier.deployment.max_replicas == 8
