"""The router's metrics of each replica and tier: what the dashboard and the alert rules read."""

from __future__ import annotations

import grpc
import pytest

from hybrid.client import build_request
from hybrid.discovery import ReplicaRecord
from hybrid.router.ledger import Call, CallLedger
from hybrid.router.metrics import RouterMetrics
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.server import Router, RouterConfig
from hybrid.v1 import inference_pb2_grpc as pb_grpc
from tests.hybrid.router import fake_replicas as scripts
from tests.hybrid.router.fake_replicas import FakeReplica, MemorySource

pytestmark = pytest.mark.timeout(10)


def replica(replica_id: str, tier: str, capacity: int = 4, cost: float = 0.0, **load) -> ReplicaState:
    record = ReplicaRecord(
        id=replica_id,
        address="127.0.0.1",
        port=1,
        tier=tier,
        model="m",
        precision="bf16",
        region="test",
        capacity=capacity,
        cost_per_hour=cost,
    )
    return ReplicaState(record, **load)


def value(metrics: RouterMetrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_each_replica_has_its_queue_batch_state_and_cost_and_each_tier_its_free_slots():
    metrics = RouterMetrics()
    edge = replica("edge-1", "edge", capacity=4, cost=0.5, queue_depth=1, active=2)
    full = replica("edge-2", "edge", capacity=2, active=2, queue_depth=3)
    ejected = replica("edge-3", "edge", capacity=8)
    draining = replica("priv-1", "private", capacity=8, draining=True)
    metrics.observe_discovery(True, 0.0, [edge, full, ejected, draining], ejected=lambda r: r is ejected)
    assert value(metrics, "hybrid_router_replica_queue_depth", tier="edge", replica="edge-1") == 1
    assert value(metrics, "hybrid_router_replica_active", tier="edge", replica="edge-1") == 2
    assert value(metrics, "hybrid_router_replica_capacity", tier="edge", replica="edge-1") == 4
    assert value(metrics, "hybrid_router_replica_cost_per_hour", tier="edge", replica="edge-1") == 0.5
    assert value(metrics, "hybrid_router_replica_ejected", tier="edge", replica="edge-3") == 1
    assert value(metrics, "hybrid_router_replica_ejected", tier="edge", replica="edge-1") == 0
    assert value(metrics, "hybrid_router_replica_draining", tier="private", replica="priv-1") == 1
    # edge-1: 4 - 2 - 1 = 1; edge-2 is over full (counts 0, not -3); edge-3 is ejected, priv-1 drains.
    assert value(metrics, "hybrid_router_tier_free_slots", tier="edge") == 1
    assert value(metrics, "hybrid_router_tier_free_slots", tier="private") == 0
    assert value(metrics, "hybrid_router_tier_free_slots", tier="public") == 0


def test_a_replica_that_leaves_discovery_takes_its_series_with_it():
    metrics = RouterMetrics()
    staying, leaving = replica("edge-1", "edge"), replica("edge-2", "edge")
    metrics.observe_discovery(True, 0.0, [staying, leaving])
    assert value(metrics, "hybrid_router_replica_capacity", tier="edge", replica="edge-2") == 4
    metrics.observe_discovery(True, 0.0, [staying])
    assert value(metrics, "hybrid_router_replica_capacity", tier="edge", replica="edge-2") is None
    assert value(metrics, "hybrid_router_replica_queue_depth", tier="edge", replica="edge-2") is None
    assert value(metrics, "hybrid_router_replica_capacity", tier="edge", replica="edge-1") == 4


def test_the_calls_the_router_has_open_at_each_replica_come_from_its_ledger():
    metrics, ledger = RouterMetrics(), CallLedger()
    state = replica("edge-1", "edge")

    ledger.sent(Call(state, 0.0, None, 8))
    ledger.sent(Call(state, 0.0, None, 8))
    metrics.observe_discovery(True, 0.0, [state], ledger=ledger)
    assert value(metrics, "hybrid_router_replica_outstanding", tier="edge", replica="edge-1") == 2


async def test_tokens_streamed_are_counted_by_tier_and_a_routed_router_reports_its_replicas():
    fake = FakeReplica("priv-1", "private", scripts.answers)
    await fake.shell.start()
    router = Router(RouterConfig(port=0, discovery="memory", poll_interval_s=60), source=MemorySource([fake.record]))
    await router.start()
    try:
        async with grpc.aio.insecure_channel(router.address) as channel:
            stub = pb_grpc.InferenceStub(channel)
            for _ in range(2):
                [r async for r in stub.Generate(build_request("hello"), timeout=5)]
        router.dataplane.observe_discovery()
        metrics = router.dataplane.metrics
        assert value(metrics, "hybrid_router_generated_tokens_total", tier="private") == 6
        assert value(metrics, "hybrid_router_replica_capacity", tier="private", replica="priv-1") == 4
        assert value(metrics, "hybrid_router_tier_free_slots", tier="private") == 4
    finally:
        await router.stop()
        await fake.shell.stop(0)
