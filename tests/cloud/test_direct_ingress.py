"""Serve replicas reached on their own ports (direct ingress): a real local Ray cluster, the real model, the router.

Each replica registers itself in discovery once Serve gives it a port, leaves when it stops, and is dropped by
its siblings when it is killed outright; the router reaches the replicas without the proxy, moves requests
that had no token yet off a dead replica, and sends traffic to the replica Serve starts in its place.
"""

from __future__ import annotations

import concurrent.futures
import time

import grpc
import pytest
import ray
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud.config import DeploymentSettings
from hybrid.client import HybridClient, RequestFailed
from hybrid.discovery import StaticFileRegistry
from hybrid.v1 import inference_pb2 as pb
from hybrid.v1 import inference_pb2_grpc as pb_grpc

APP = "direct"


def chat(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
        time.sleep(0.2)
    return found


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return StaticFileRegistry(tmp_path_factory.mktemp("direct") / "discovery.yaml")


@pytest.fixture(scope="module")
def direct_app(serve_cluster, registry):
    serve_cluster.deploy(
        APP,
        deployment=DeploymentSettings(num_gpus=0, num_cpus=0, min_replicas=2, max_replicas=2),
        discovery=f"static:{registry.path}",
        cost_per_hour=1.5,
    )
    registry.register(serve_cluster.record(APP, "private"))  # the proxy's record, as --no-direct would register
    yield APP
    serve_cluster.delete(APP)


def replicas(registry) -> list:
    return [r for r in registry.list() if r.application == APP and r.serve_replica]


@pytest.fixture(scope="module")
def router(direct_app, registry):
    from hybrid.router.server import BackgroundRouter, RouterConfig

    wait_for(lambda: len(replicas(registry)) == 2, 120, "both replicas did not register")
    started = BackgroundRouter(
        RouterConfig(port=0, discovery=f"static:{registry.path}", poll_interval_s=0.2, realtime_ttft_ms=30_000)
    )
    yield started
    started.stop()


def test_each_replica_registers_its_own_port_and_answers_there(direct_app, registry):
    listed = wait_for(
        lambda: len(replicas(registry)) == 2 and replicas(registry), 120, "both replicas did not register"
    )
    assert len({r.port for r in listed}) == 2 and all(r.port >= 40000 for r in listed), listed
    assert {(r.capacity, r.cost_per_hour, r.tier) for r in listed} == {(8, 1.5, "private")}
    for record in listed:
        address = f"{record.address}:{record.port}"
        with HybridClient(address) as client:
            answer = client.complete(messages=chat("Say hi."), max_new_tokens=3)
        assert answer.served_by.replica_id == record.id
        with grpc.insecure_channel(address) as channel:
            load = pb_grpc.InferenceStub(channel).GetLoad(pb.GetLoadRequest(), timeout=10)
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert load.replica_id == record.id, "the load report came from another replica than the one registered"
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_the_router_reaches_the_replicas_not_the_proxy(router, registry):
    direct_ids = {r.id for r in replicas(registry)}
    with HybridClient(router.address, timeout_s=120) as client:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(lambda i: client.complete(messages=chat(f"Count to {i}."), max_new_tokens=8), range(6))
            )
    served = {a.served_by.replica_id for a in answers}
    assert served <= direct_ids, f"answers came from {served - direct_ids}, not the replicas' own ports"


def actor_of(serve_replica: str):
    [name] = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == "serve" and a["name"].endswith(f"#{serve_replica}")
    ]
    return ray.get_actor(name, namespace="serve")


def test_a_killed_replica_fails_its_streams_its_waiting_requests_move_and_a_new_one_joins(router, registry):
    before = {r.id: r for r in replicas(registry)}
    with HybridClient(router.address, timeout_s=120) as client:
        streams = [
            client.stream(messages=chat("Tell me a long story about the sea."), max_new_tokens=80) for _ in range(4)
        ]
        firsts = [next(s) for s in streams]
        serving = {first.served_by.replica_id for first in firsts}
        victim = before[sorted(serving)[0]]
        ray.kill(actor_of(victim.serve_replica), no_restart=True)
        # Sent before the router or discovery know: the ones that reach the dead replica get no token there.
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            waiting = list(pool.map(lambda i: client.complete(prompt=f"Hello {i}", max_new_tokens=4), range(6)))
        assert {a.served_by.replica_id for a in waiting} <= set(before) - {victim.id}
        for first, stream in zip(firsts, streams, strict=True):
            if first.served_by.replica_id == victim.id:
                with pytest.raises(RequestFailed) as failure:
                    list(stream)
                assert failure.value.code == grpc.StatusCode.UNAVAILABLE, failure.value
            else:
                assert list(stream)[-1].finish_reason, "a stream on the surviving replica was cut short"

        # The survivor drops the dead replica's record; Serve's replacement registers and gets traffic.
        wait_for(lambda: victim.id not in {r.id for r in replicas(registry)}, 15, "the killed replica stayed listed")
        joined = wait_for(
            lambda: [r for r in replicas(registry) if r.id not in before], 120, "no replacement replica registered"
        )

        def served_by_new() -> bool:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda i: client.complete(prompt=f"Hi {i}", max_new_tokens=4), range(8)))
            return joined[0].id in {a.served_by.replica_id for a in answers}

        wait_for(served_by_new, 60, "the replacement replica got no traffic")


def test_a_replica_on_a_port_of_its_own_registers_it_answers_there_and_leaves_with_its_application(
    serve_cluster, registry
):
    from cloud.directory import serve_grpc_targets

    app = serve_cluster.deploy(
        "short-lived",
        deployment=DeploymentSettings(num_gpus=0, num_cpus=0),
        discovery=f"static:{registry.path}",
        replica_port=0,
    )
    [record] = wait_for(
        lambda: [r for r in registry.list() if r.application == app], 120, "the replica did not register"
    )
    [target] = serve_grpc_targets(app).values()
    assert record.port != target.port and record.address == "127.0.0.1", "the replica's own port, on loopback"
    with HybridClient(f"{record.address}:{record.port}") as client:
        answer = client.complete(messages=chat("Say hi."), max_new_tokens=3)
    assert answer.served_by.replica_id == record.id and answer.finish_reason
    serve_cluster.delete(app)
    assert not [r for r in registry.list() if r.application == app], "a stopped replica stayed in discovery"
