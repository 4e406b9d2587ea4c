"""The cloud tier as deployed: a real local Ray cluster, Serve's gRPC proxy on loopback, the real model."""

from __future__ import annotations

import concurrent.futures
import time

import grpc
import pytest
import ray
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud.config import DeploymentSettings
from hybrid.client import HybridClient, RequestFailed
from hybrid.v1 import inference_pb2 as pb
from tests.conftest import PROMPTS


def chat(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def test_streamed_answer_through_the_grpc_proxy_matches_pytorch_greedy(serve_cluster, private_app, torch_greedy):
    with HybridClient(serve_cluster.address, application=private_app) as client:
        for prompt in PROMPTS[:3]:
            chunks = list(client.stream(messages=chat(prompt), max_new_tokens=16))
            assert [t for c in chunks for t in c.token_ids] == torch_greedy(prompt, 16), prompt
            assert len(chunks) > 1, "the answer must arrive as a stream of chunks"
            last = chunks[-1]
            assert last.served_by.tier == pb.PRIVATE
            assert last.served_by.precision == "fp32"
            assert last.served_by.region == "test-cloud-region"
            assert last.usage.completion_tokens == sum(len(c.token_ids) for c in chunks)
        load = client.load()
    assert load.capacity == 8 and load.model == "smollm2-135m" and not load.draining
    # Timed at one row and at eight when the replica started: on a CPU, eight rows take longer a step.
    assert load.token_ms_base > 0 and load.token_ms_per_row > 0


def test_concurrent_requests_share_decode_steps(serve_cluster, private_app, torch_greedy):
    handle = serve_cluster.handle(private_app)
    handle.reset_stats.remote().result()
    with HybridClient(serve_cluster.address, application=private_app) as client:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [
                pool.submit(client.complete, messages=chat(p), max_new_tokens=6 + 2 * i)
                for i, p in enumerate(PROMPTS[:4])
            ]
            answers = [f.result() for f in futures]
    for i, prompt in enumerate(PROMPTS[:4]):
        assert answers[i].token_ids == torch_greedy(prompt, 6 + 2 * i), prompt
    stats = handle.stats.remote().result()
    assert stats["max_rows_in_step"] > 1, f"concurrent requests never shared a decode step: {stats}"


def test_the_replica_keeps_its_start_heap_out_of_garbage_collections(serve_cluster, private_app):
    stats = serve_cluster.handle(private_app).stats.remote().result()
    # Ray Serve, torch, transformers and the model: hundreds of thousands of objects that no collection walks.
    assert stats["frozen_objects"] > 100_000, stats
    # The pause watch began after that freeze: the collection before it is the start's, not a stall.
    assert stats["frozen_when_gc_watch_began"] > 100_000, stats


def test_health_check_through_the_proxy(serve_cluster, private_app):
    """What Consul's native gRPC check sees: the proxy routes grpc.health.v1 Check to the deployment."""
    with grpc.insecure_channel(serve_cluster.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=30, metadata=(("application", private_app),)
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def raw_generate(address: str, app: str, body: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_stream("/hybrid.v1.Inference/Generate")
        with pytest.raises(grpc.RpcError) as failure:
            list(call(body, timeout=30, metadata=(("application", app),)))
    return failure.value


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        (dict(prompt="hi", temperature=5.0), grpc.StatusCode.INVALID_ARGUMENT, "temperature"),
        (dict(prompt="hi " * 300, max_new_tokens=4000), grpc.StatusCode.INVALID_ARGUMENT, "lower max_new_tokens"),
        (dict(prompt="hi", model="llama-70b"), grpc.StatusCode.NOT_FOUND, "is not served here"),
        (dict(prompt=""), grpc.StatusCode.INVALID_ARGUMENT, "prompt"),
    ],
)
def test_bad_requests_get_the_edge_agents_status_and_message(serve_cluster, private_app, params, code, message):
    with HybridClient(serve_cluster.address, application=private_app) as client:
        with pytest.raises(RequestFailed) as failure:
            client.complete(**params)
        assert failure.value.code == code
        assert message in failure.value.details
        assert client.complete(prompt="Hello", max_new_tokens=2).token_ids, "the tier must keep serving"


def test_malformed_bytes_are_invalid_argument_not_unknown(serve_cluster, private_app):
    error = raw_generate(serve_cluster.address, private_app, b"\xff\xff\xff not a protobuf")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid hybrid.v1.GenerateRequest" in error.details()


def burst(address: str, app: str, count: int) -> list:
    """``count`` concurrent long requests; each outcome is a Completion or the RequestFailed."""
    with HybridClient(address, application=app) as client:

        def ask():
            try:
                return client.complete(prompt="Count slowly to twenty.", max_new_tokens=24)
            except RequestFailed as failure:
                return failure

        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            outcomes = list(pool.map(lambda _: ask(), range(count)))
        assert client.complete(prompt="Hello", max_new_tokens=2).token_ids, "the tier must serve once the burst is over"
    return outcomes


@pytest.mark.parametrize(
    ("bound", "replica", "deployment", "says"),
    [
        # The replica's own queue: Serve passes all 8 on, the engine takes 1 and queues 1.
        (
            "replica queue",
            dict(max_batch_size=1, max_queued_requests=1),
            dict(max_ongoing_requests=16, max_queued_requests=16),
            "retry after",
        ),
        # Serve's queue: one request on the replica, one waiting in Serve, the rest dropped by Serve.
        (
            "Serve queue",
            dict(max_batch_size=2, max_queued_requests=8),
            dict(max_ongoing_requests=1, max_queued_requests=1),
            "backpressure",
        ),
    ],
)
def test_backpressure_is_resource_exhausted(serve_cluster, bound, replica, deployment, says):
    """Past either queue bound, callers get RESOURCE_EXHAUSTED at once, never a hang."""
    app = serve_cluster.deploy("tight", deployment=DeploymentSettings(num_gpus=0, num_cpus=0, **deployment), **replica)
    outcomes = burst(serve_cluster.address, app, 8)
    serve_cluster.delete(app)  # frees its replica's memory for the rest of the session
    refused = [o for o in outcomes if isinstance(o, RequestFailed)]
    assert refused, f"8 requests against the {bound} bound were all accepted"
    assert {r.code for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}, [str(r) for r in refused]
    assert all(says in r.details for r in refused), [r.details for r in refused]
    # The replica's refusal says when to retry in its text only: Serve's proxy drops the trailing metadata (and
    # with it the typed RetryInfo) of a stream that fails before its first message, and clients never parse text.
    assert len(refused) < len(outcomes), "no request was served at all"


def test_a_killed_replica_fails_its_streams_and_serve_replaces_it(serve_cluster):
    app = serve_cluster.deploy("crash", tier="public")
    with HybridClient(serve_cluster.address, application=app) as client:
        before = serve_cluster.handle(app).stats.remote().result()["replica_id"]
        stream = client.stream(messages=chat("Tell me a long story about the sea."), max_new_tokens=200)
        assert not next(stream).finish_reason
        replicas = [
            a
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and f"SERVE_REPLICA::{app}#" in a["name"]
        ]
        assert len(replicas) == 1, replicas
        ray.kill(ray.get_actor(replicas[0]["name"], namespace="serve"), no_restart=True)
        # Ray's proxy ends the stream with status OK when the replica dies; the client knows the
        # answer is cut short because no chunk carried a finish reason.
        with pytest.raises(RequestFailed) as failure:
            list(stream)
        assert failure.value.code == grpc.StatusCode.UNAVAILABLE, failure.value
        assert "went away" in failure.value.details
        deadline = time.monotonic() + 120
        while True:
            try:
                answer = client.complete(prompt="Hello", max_new_tokens=2)
                break
            except RequestFailed:
                assert time.monotonic() < deadline, "Serve did not bring a replacement replica up within 120 s"
                time.sleep(1)
        assert answer.token_ids
        assert serve_cluster.handle(app).stats.remote().result()["replica_id"] != before
    serve_cluster.delete(app)
