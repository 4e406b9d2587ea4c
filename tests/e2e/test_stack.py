"""The whole stack: router + edge agents + the cloud tier (private and public) on the session's local Ray.

Every part is real: the model, ONNX Runtime on the edge, PyTorch in Serve replicas behind Serve's
gRPC proxy, the router's gRPC server, and discovery (the static file, or Consul through its HTTP
stub — the same test runs on both).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

import grpc
import pytest

from hybrid.client import HybridClient, RequestFailed
from hybrid.discovery import StaticFileRegistry
from hybrid.v1 import inference_pb2 as pb
from tests.conftest import start_agent
from tests.hybrid.discovery.consul_stub import ConsulStub


def chat(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


@pytest.fixture(scope="module")
def cloud_apps(serve_cluster):
    private = serve_cluster.deploy("e2e-private", tier="private")
    public = serve_cluster.deploy("e2e-public", tier="public")
    yield serve_cluster.record(private, "private"), serve_cluster.record(public, "public")
    serve_cluster.delete(private)
    serve_cluster.delete(public)


class Discovery:
    """Where the stack's replicas register: the static file, or Consul (its HTTP stub here)."""

    def __init__(self, kind: str, tmp_path):
        self.kind = kind
        if kind == "static":
            self.spec = f"static:{tmp_path / 'discovery.yaml'}"
            self.stub = None
        else:
            self.stub = ConsulStub().start()
            self.spec = f"consul:{self.stub.address}"

    def registry(self):
        from hybrid.discovery import registry_from_spec

        return registry_from_spec(self.spec)

    def close(self) -> None:
        if self.stub is not None:
            self.stub.stop()


@pytest.fixture(params=["static", "consul"])
def discovery(request, tmp_path):
    found = Discovery(request.param, tmp_path)
    yield found
    found.close()


def start_router(spec: str):
    from hybrid.router.server import BackgroundRouter, RouterConfig

    # On two CPU cores no tier gives a first token within the 250 ms REALTIME target, so the router would
    # take the soonest expected one, often a replica it knows nothing of yet; these tests are about tiers,
    # spillover and failover, and tests/hybrid/router/policy/test_policy.py covers the first-token target. (The target
    # only applies below a request's deadline: the clients here allow 60 s.)
    return BackgroundRouter(RouterConfig(port=0, discovery=spec, poll_interval_s=0.2, realtime_ttft_ms=30_000))


def served_tier(answer) -> str:
    return pb.Tier.Name(answer.served_by.tier).lower()


def test_each_class_goes_to_its_tier(discovery, cloud_apps, int8_artifact, tmp_path):
    registry = discovery.registry()
    for record in cloud_apps:
        registry.register(record)
    edge = start_agent(int8_artifact, tmp_path, discovery=discovery.spec, region="edge-region")
    router = start_router(discovery.spec)
    try:
        with HybridClient(router.address) as client:
            realtime = client.complete(messages=chat("Say hi."), max_new_tokens=4, priority="realtime")
            interactive = client.complete(messages=chat("Name a colour."), max_new_tokens=4, priority="interactive")
            batch = client.complete(messages=chat("Name a fruit."), max_new_tokens=4, priority="batch")
        assert served_tier(realtime) == "edge"
        assert served_tier(interactive) == "private"
        assert served_tier(batch) == "public"
        # A hot key (the same affinity key again and again) goes to the edge first whatever its priority.
        with HybridClient(router.address) as client:
            answers = [
                client.complete(prompt="Hot question", affinity_key="hot-1", max_new_tokens=2, priority="interactive")
                for _ in range(4)
            ]
        assert served_tier(answers[-1]) == "edge", [served_tier(a) for a in answers]
    finally:
        router.stop()
        edge.stop()


def kill(agent) -> None:
    """Stops an edge agent the way a crash does: no drain, no deregistration."""
    agent.call(agent.agent.shell.server.stop(0))
    agent.agent.engine.stop(0)
    # A crash ends the process and its GC pause watch with it; here the test's process lives on.
    agent.agent._stop_gc_watch()


def test_killing_the_edge_mid_load_moves_realtime_to_the_cloud(cloud_apps, int8_artifact, tmp_path):
    spec = f"static:{tmp_path / 'discovery.yaml'}"
    registry = StaticFileRegistry(tmp_path / "discovery.yaml")
    for record in cloud_apps:
        registry.register(record)
    edge = start_agent(int8_artifact, tmp_path, discovery=spec)
    router = start_router(spec)
    outcomes: list[tuple[str, object]] = []
    served_on_edge = threading.Event()

    def one(i: int):
        streamed = False
        try:
            with HybridClient(router.address) as client:
                answer = None
                for chunk in client.stream(prompt=f"Count to {i}.", max_new_tokens=8, priority="realtime"):
                    streamed = True
                    answer = chunk
                if served_tier(answer) == "edge":
                    served_on_edge.set()
                return ("ok", served_tier(answer))
        except RequestFailed as failure:
            return ("failed after a token" if streamed else "failed before a token", failure)

    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(one, i) for i in range(6)]
            # Mid-load: the edge has answered at least once and more requests are in flight.
            assert served_on_edge.wait(timeout=60), "no REALTIME request was served on the edge before the kill"
            kill(edge)
            futures += [pool.submit(one, i) for i in range(6, 14)]
            outcomes = [f.result() for f in futures]
    finally:
        router.stop()
    before_token = [o for o in outcomes if o[0] == "failed before a token"]
    assert not before_token, f"requests that had streamed nothing failed: {before_token}"
    served = [o[1] for o in outcomes if o[0] == "ok"]
    assert "edge" in served, outcomes
    assert {"private", "public"} & set(served[-4:]), f"REALTIME did not move to the cloud: {outcomes}"


def test_a_saturated_edge_spills_over_to_the_cloud_and_nothing_fails(cloud_apps, int8_artifact, tmp_path):
    spec = f"static:{tmp_path / 'discovery.yaml'}"
    registry = StaticFileRegistry(tmp_path / "discovery.yaml")
    for record in cloud_apps:
        registry.register(record)
    # One sequence at a time and one waiting: a burst of REALTIME requests cannot all fit on it.
    edge = start_agent(int8_artifact, tmp_path, discovery=spec, max_batch_size=1, max_queued_requests=1)
    router = start_router(spec)
    try:
        with HybridClient(router.address, timeout_s=60) as client:
            client.complete(prompt="warm up", max_new_tokens=16, priority="realtime")  # teaches the router its pace
            time.sleep(0.5)
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                futures = [
                    pool.submit(client.complete, prompt=f"Question {i}?", max_new_tokens=16, priority="realtime")
                    for i in range(8)
                ]
                answers = []
                for future in futures:
                    try:
                        answers.append(future.result())
                    except RequestFailed as failure:
                        answers.append(failure)
        failures = [a for a in answers if isinstance(a, RequestFailed)]
        assert not failures, [str(f) for f in failures]
        tiers = [served_tier(a) for a in answers]
        assert "edge" in tiers and {"private", "public"} & set(tiers), tiers
        spilled = router.router.dataplane.metrics.spillovers
        assert sum(s.value for m in spilled.collect() for s in m.samples if s.name.endswith("_total")) >= 1
    finally:
        router.stop()
        edge.stop()


def test_the_router_keeps_serving_from_its_last_view_when_consul_goes_down(cloud_apps, tmp_path):
    stub = ConsulStub().start()
    spec = f"consul:{stub.address}"
    try:
        from hybrid.discovery import registry_from_spec

        registry_from_spec(spec).register(cloud_apps[0])
        router = start_router(spec)
        try:
            stub.stop()
            time.sleep(1.0)
            with HybridClient(router.address) as client:
                answer = client.complete(prompt="Still there?", max_new_tokens=2)
            assert served_tier(answer) == "private"
            healthy = router.router.dataplane.metrics.discovery_healthy
            router.router.dataplane.observe_discovery()
            assert next(iter(healthy.collect())).samples[0].value == 0
        finally:
            router.stop()
    finally:
        stub.stop()


def test_with_nothing_registered_the_router_answers_resource_exhausted(tmp_path):
    router = start_router(f"static:{tmp_path / 'empty.yaml'}")
    try:
        with HybridClient(router.address) as client:
            with pytest.raises(RequestFailed) as failure:
                client.complete(prompt="anyone?", priority="realtime")
        assert failure.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        router.stop()
