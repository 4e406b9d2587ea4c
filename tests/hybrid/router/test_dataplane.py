"""The data plane against scripted replicas over real gRPC on loopback: retries, cuts, deadlines, hang-ups."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import grpc
import pytest

from hybrid import wire
from hybrid.client import build_request
from hybrid.router.server import Router, RouterConfig
from hybrid.v1 import inference_pb2_grpc as pb_grpc
from tests.hybrid.router import fake_replicas as scripts
from tests.hybrid.router.fake_replicas import FakeReplica, MemorySource

pytestmark = pytest.mark.timeout(10)


@asynccontextmanager
async def routed(*replicas: FakeReplica, drain_grace_s: float = 0):
    """A real router in front of ``replicas``, and a client stub to it."""
    for replica in replicas:
        await replica.shell.start()
    source = MemorySource([r.record for r in replicas])
    config = RouterConfig(port=0, discovery="memory", poll_interval_s=60, drain_grace_s=drain_grace_s)
    router = Router(config, source=source)
    await router.start()
    channel = grpc.aio.insecure_channel(router.address)
    try:
        yield router, source, pb_grpc.InferenceStub(channel)
    finally:
        await channel.close()
        await router.stop()
        for replica in replicas:
            await replica.shell.stop(0)


async def ask(stub, timeout_s: float = 5.0, **params) -> list:
    params.setdefault("priority", "interactive")  # private first, then public
    return [r async for r in stub.Generate(build_request("hello", **params), timeout=timeout_s)]


def counted(router: Router, name: str, labels: dict[str, str] | None = None) -> float:
    return router.dataplane.metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def settled(check, within_s: float = 1.0) -> bool:
    deadline = time.monotonic() + within_s
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return bool(check())


@pytest.mark.parametrize("failure", [scripts.fails_at_once, scripts.dies_in_ray], ids=["unavailable", "ray-actor"])
async def test_a_replica_failing_before_its_first_token_is_retried_on_another(failure):
    bad, good = FakeReplica("priv-1", "private", failure), FakeReplica("pub-1", "public", scripts.answers)
    async with routed(bad, good) as (router, _, stub):
        answer = await ask(stub)
        assert [t for r in answer for t in r.token_ids] == [1, 2, 3]
        assert (bad.calls, good.calls) == (1, 1)
        assert counted(router, "hybrid_router_retries_total") == 1
        assert router.dataplane.policy.outliers.consecutive_failures(router.view.states["priv-1"]) == 1
        labels = {"tier": "private", "request_class": "cold INTERACTIVE", "outcome": "unavailable"}
        assert counted(router, "hybrid_router_requests_total", labels) == 1, "a dead actor counts as unavailable"


async def test_a_stream_cut_midway_by_the_replicas_death_ends_at_once_with_unavailable():
    dying = FakeReplica("priv-1", "private", scripts.stalls_after_one_chunk)
    async with routed(dying) as (router, _, stub):
        call = stub.Generate(build_request("hello", priority="interactive"), timeout=5)
        assert (await call.read()).token_ids == [1]
        began = time.monotonic()
        await dying.shell.server.stop(0)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call.read()
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - began < 1.0
        assert await settled(lambda: router.dataplane.ledger.total_outstanding() == 0)


async def test_a_stream_that_ends_without_its_final_chunk_is_unavailable_and_held_against_the_replica():
    replica = FakeReplica("priv-1", "private", scripts.stops_without_its_final_chunk)
    async with routed(replica) as (router, _, stub):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await ask(stub)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert router.dataplane.policy.outliers.consecutive_failures(router.view.states["priv-1"]) == 1


async def test_a_replica_that_leaves_discovery_while_it_streams_finishes_its_answer_and_gets_no_new_one():
    leaving, staying = (
        FakeReplica("priv-1", "private", scripts.streams_slowly),
        FakeReplica("pub-1", "public", scripts.answers),
    )
    async with routed(leaving, staying, drain_grace_s=5) as (router, source, stub):
        call = stub.Generate(build_request("hello", priority="interactive"), timeout=5)
        assert (await call.read()).token_ids == [1]
        source.listed.remove(leaving.record)
        router.view.refresh()  # it left discovery mid-answer
        rest = [await call.read()]
        while not rest[-1].finish_reason:
            rest.append(await call.read())
        assert [t for r in rest for t in r.token_ids] == list(range(2, 11)) and rest[-1].finish_reason
        await ask(stub)
        assert (leaving.calls, staying.calls) == (1, 1), "a leaving replica takes no new request"
        assert await settled(lambda: "priv-1" not in router.view.replica_clients), "its channel closes once its answers ended"


async def test_a_replica_that_left_is_cut_with_unavailable_once_its_grace_runs_out():
    leaving = FakeReplica("priv-1", "private", scripts.streams_slowly)
    async with routed(leaving, drain_grace_s=0.1) as (router, source, stub):
        call = stub.Generate(build_request("hello", priority="interactive"), timeout=5)
        assert (await call.read()).token_ids == [1]
        began = time.monotonic()
        source.listed.clear()
        router.view.refresh()
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            while True:
                await call.read()
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE, failure.value
        assert "left discovery" in failure.value.details()
        assert time.monotonic() - began < 1.0, "at its grace, not at the deadline"
        assert await settled(lambda: router.dataplane.ledger.total_outstanding() == 0)


async def test_a_replica_silent_with_calls_open_is_frozen_ejected_and_its_waiting_calls_go_elsewhere():
    frozen, spare = (
        FakeReplica("priv-1", "private", scripts.stalls_before_answering),
        FakeReplica("pub-1", "public", scripts.answers),
    )
    async with routed(frozen, spare) as (router, _, stub):
        began = time.monotonic()
        answer = await ask(stub)
        assert [t for r in answer for t in r.token_ids] == [1, 2, 3], "retried on the spare"
        waited = time.monotonic() - began
        assert router.dataplane.liveness.stall_s <= waited < router.dataplane.liveness.stall_s + 0.5
        assert router.dataplane.policy.outliers.ejected(router.view.states["priv-1"])
        assert await settled(lambda: frozen.cancelled.is_set())


async def test_a_passed_deadline_is_deadline_exceeded_and_not_retried():
    slow, spare = (
        FakeReplica("priv-1", "private", scripts.stalls_before_answering),
        FakeReplica("pub-1", "public", scripts.answers),
    )
    async with routed(slow, spare) as (router, _, stub):
        began = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await ask(stub, timeout_s=0.3)
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - began < 1.0
        assert spare.calls == 0, "another replica would miss the same deadline"
        await asyncio.wait_for(slow.cancelled.wait(), 1.0)  # the replica stops working on it
        assert await settled(lambda: router.dataplane.ledger.total_outstanding() == 0)


async def test_a_deadline_no_replica_could_meet_even_idle_is_refused_at_once_as_deadline_exceeded():
    replicas = FakeReplica("priv-1", "private", scripts.answers), FakeReplica("pub-1", "public", scripts.answers)
    for replica in replicas:
        replica.token_ms = 50.0
    async with routed(*replicas) as (router, _, stub):
        await router.view.poll_once()
        began = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await ask(stub, timeout_s=1.0, max_new_tokens=64)  # 64 x 50 ms: 3.2 s at best
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "max_new_tokens" in failure.value.details() and wire.retry_after_ms(failure.value.trailing_metadata()) is None
        assert time.monotonic() - began < 0.5, "refused at once, not when the deadline ran out"
        assert all(r.calls == 0 for r in replicas)
        assert len(await ask(stub, timeout_s=1.0, max_new_tokens=8)) > 0  # 0.4 s fits


async def test_a_caller_hanging_up_cancels_the_call_on_the_replica_and_leaves_no_call_in_flight():
    replica = FakeReplica("priv-1", "private", scripts.stalls_after_one_chunk)
    async with routed(replica) as (router, _, stub):
        call = stub.Generate(build_request("hello", priority="interactive"), timeout=5)
        await call.read()
        assert router.dataplane.ledger.total_outstanding() == 1
        call.cancel()
        await asyncio.wait_for(replica.cancelled.wait(), 1.0)  # its slot is free
        assert await settled(lambda: router.dataplane.ledger.total_outstanding() == 0)
        labels = {"tier": "private", "request_class": "cold INTERACTIVE", "outcome": "cancelled"}
        assert await settled(lambda: counted(router, "hybrid_router_requests_total", labels) == 1)
        assert router.dataplane.policy.outliers.consecutive_failures(router.view.states["priv-1"]) == 0


async def test_a_full_replica_is_no_outlier_and_with_every_replica_full_the_caller_gets_a_retry_hint():
    full, also_full = FakeReplica("priv-1", "private", scripts.is_full), FakeReplica("pub-1", "public", scripts.is_full)
    async with routed(full, also_full) as (router, _, stub):
        outliers = router.dataplane.policy.outliers
        outliers.max_failures = 1  # any failure counted would eject at once
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await ask(stub)
        assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert wire.retry_after_ms(failure.value.trailing_metadata()) == 250, "the replicas' own hint"
        assert (full.calls, also_full.calls) == (1, 1)
        assert not any(outliers.ejected(r) or outliers.consecutive_failures(r) for r in router.view.replicas())
