"""The edge agent over real gRPC on loopback, with the real model and ONNX Runtime."""

from __future__ import annotations

import concurrent.futures
import socket
import time
import urllib.request

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hybrid.client import HybridClient, RequestFailed
from hybrid.v1 import inference_pb2 as pb
from tests.conftest import PROMPTS, running_hybrid


def chat(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def test_fp32_artifact_streams_exactly_the_pytorch_greedy_answer(fp32_agent, torch_greedy):
    with HybridClient(fp32_agent.address) as client:
        for prompt in PROMPTS:
            chunks = list(client.stream(messages=chat(prompt), max_new_tokens=16))
            streamed = [t for c in chunks for t in c.token_ids]
            assert streamed == torch_greedy(prompt, 16), prompt
            assert len(chunks) > 1, "the answer must arrive as a stream of chunks"


def test_int8_artifact_agrees_with_pytorch_and_says_where_it_ran(edge_agent, torch_greedy):
    prefixes = []
    with HybridClient(edge_agent.address) as client:
        for prompt in PROMPTS:
            answer = client.complete(messages=chat(prompt), max_new_tokens=16)
            reference = torch_greedy(prompt, 16)
            prefixes.append(common_prefix(answer.token_ids, reference) / max(1, min(len(reference), 16)))
            assert answer.served_by.tier == pb.EDGE
            assert answer.served_by.precision == "int8-b32"
            assert answer.served_by.region == "test-region"
            assert answer.usage.completion_tokens == len(answer.token_ids)
            assert answer.finish_reason in ("STOP", "LENGTH")
    # Measured: the int8 artifact follows the full model's greedy path for most prompts; a prompt whose
    # first two candidate tokens are nearly tied may branch off. Recorded in docs/benchmarks.md.
    agreeing = sum(1 for p in prefixes if p == 1.0)
    assert agreeing >= len(PROMPTS) // 2, prefixes
    assert sum(prefixes) / len(prefixes) >= 0.6, prefixes


def test_concurrent_requests_share_decode_steps_and_match_solo_answers(fp32_agent, torch_greedy):
    engine = fp32_agent.agent.engine
    before = engine.max_rows_in_step
    engine.max_rows_in_step = 0
    with HybridClient(fp32_agent.address) as client, concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        # Different lengths, so that sequences join and leave a running batch.
        futures = {
            prompt: pool.submit(client.complete, messages=chat(prompt), max_new_tokens=8 + 2 * i)
            for i, prompt in enumerate(PROMPTS)
        }
        answers = {prompt: f.result() for prompt, f in futures.items()}
    for i, prompt in enumerate(PROMPTS):
        assert answers[prompt].token_ids == torch_greedy(prompt, 8 + 2 * i), prompt
    assert engine.max_rows_in_step > 1, "concurrent requests never shared a decode step"
    engine.max_rows_in_step = max(before, engine.max_rows_in_step)


def test_a_late_request_joins_the_running_batch(fp32_agent, torch_greedy):
    engine = fp32_agent.agent.engine
    with HybridClient(fp32_agent.address) as client, concurrent.futures.ThreadPoolExecutor(2) as pool:
        long_stream = client.stream(messages=chat(PROMPTS[1]), max_new_tokens=48)
        first = next(long_stream)  # the long request is decoding now
        steps_before = engine.decode_steps
        short = pool.submit(client.complete, messages=chat(PROMPTS[0]), max_new_tokens=6).result()
        rest = list(long_stream)
        long_done_steps = engine.decode_steps
    long_tokens = list(first.token_ids) + [t for c in rest for t in c.token_ids]
    assert short.token_ids == torch_greedy(PROMPTS[0], 6)
    assert long_tokens == torch_greedy(PROMPTS[1], 48)
    # The short one finished while the long one was still running, within far fewer steps than 48.
    assert long_done_steps - steps_before < 48


def test_sampling_is_reproducible_with_a_seed(edge_agent):
    with HybridClient(edge_agent.address) as client:
        params = dict(messages=chat("Tell me a story."), max_new_tokens=12, temperature=0.9, top_p=0.9, seed=7)
        first = client.complete(**params)
        second = client.complete(**params)
        other = client.complete(**{**params, "seed": 8})
    assert first.token_ids == second.token_ids
    assert first.token_ids != other.token_ids or len(first.token_ids) == 0


def test_stop_strings_end_the_answer_before_them(edge_agent):
    with HybridClient(edge_agent.address) as client:
        full = client.complete(messages=chat(PROMPTS[0]), max_new_tokens=16)
        words = full.text.split()
        assert len(words) >= 3
        stop = " " + words[2]
        cut = client.complete(messages=chat(PROMPTS[0]), max_new_tokens=16, stop=[stop])
    assert cut.finish_reason == "STOP"
    assert stop not in cut.text
    assert full.text.startswith(cut.text)


def test_load_report_and_health_and_reflection(edge_agent):
    with HybridClient(edge_agent.address) as client:
        load = client.load()
    assert load.capacity == 32 and load.max_queue == 256
    assert load.precision == "int8-b32" and load.model == "smollm2-135m"
    with grpc.insecure_channel(edge_agent.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="hybrid.v1.Inference"))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"hybrid.v1.Inference", "grpc.health.v1.Health"} <= names


def test_load_report_says_what_first_tokens_take_lately(edge_agent):
    with HybridClient(edge_agent.address) as client:
        answer = client.complete(messages=chat("Name a colour."), max_new_tokens=2)
        load = client.load()
    # The answer's own first token is in the window (with those of earlier tests' requests, if recent).
    assert answer.token_ids and answer.timing.time_to_first_token_ms > 0
    assert 0 < load.recent_ttft_p90_ms < 120_000


def test_load_report_says_how_tokens_slow_as_the_batch_fills_from_the_start(edge_agent):
    # The agent timed a lone request and a full batch before it served: on a CPU a full batch's step is
    # slower than one row's.
    with HybridClient(edge_agent.address) as client:
        load = client.load()
    assert load.token_ms_base > 0 and load.token_ms_per_row > 0
    assert load.token_ms_base + load.token_ms_per_row * load.capacity > 2 * load.token_ms_base


def test_metrics_endpoint_counts_requests(edge_agent):
    with HybridClient(edge_agent.address) as client:
        client.complete(prompt="Hello", max_new_tokens=2)
    body = urllib.request.urlopen(f"http://{edge_agent.agent.metrics_address}/metrics", timeout=5).read().decode()
    assert 'hybrid_replica_requests_total{outcome="ok"}' in body
    assert "hybrid_replica_decode_step_seconds_bucket" in body
    with HybridClient(edge_agent.address) as client, pytest.raises(RequestFailed):
        client.complete(prompt="Hello", top_p=3.0)
    body = urllib.request.urlopen(f"http://{edge_agent.agent.metrics_address}/metrics", timeout=5).read().decode()
    assert 'hybrid_replica_rejected_total{code="INVALID_ARGUMENT"}' in body


def test_agent_registers_in_static_discovery(edge_agent):
    path = edge_agent.agent.registry.path
    services = yaml.safe_load(path.read_text())["services"]
    mine = [s for s in services if s["ID"] == edge_agent.agent.replica_id]
    assert len(mine) == 1
    entry = mine[0]
    assert entry["Name"] == "hybrid-inference"
    assert (
        "tier:edge" in entry["Tags"] and "precision:int8-b32" in entry["Tags"] and "model:smollm2-135m" in entry["Tags"]
    )
    assert entry["Meta"]["region"] == "test-region" and entry["Meta"]["capacity"] == "32"
    assert int(entry["Meta"]["grpc_port"]) == entry["Port"]


def test_cancelled_stream_frees_its_slot(edge_agent):
    engine = edge_agent.agent.engine
    with HybridClient(edge_agent.address) as client:
        stream = client.stream(messages=chat("Write a long essay about rivers."), max_new_tokens=400)
        next(stream)
        stream.close()  # the client walks away
    deadline = time.monotonic() + 10
    while engine.load().active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.load().active == 0


def test_sigterm_drains_deregisters_and_exits_zero(int8_artifact, tmp_path):
    discovery = tmp_path / "discovery.yaml"
    serve = ("edge", "serve", "--artifact", str(int8_artifact), "--port", "0")
    with running_hybrid(*serve, "--discovery", f"static:{discovery}", "--replica-id", "edge-sigterm") as (
        process,
        address,
    ):
        assert [s["ID"] for s in yaml.safe_load(discovery.read_text())["services"]] == ["edge-sigterm"]
        with HybridClient(address) as client:
            stream = client.stream(prompt="Once upon a time", max_new_tokens=30)
            next(stream)
            process.terminate()
            rest = list(stream)  # the stream in flight is allowed to finish
        assert rest and rest[-1].finish_reason == pb.LENGTH
        assert process.wait(timeout=60) == 0
        assert yaml.safe_load(discovery.read_text())["services"] == []


def test_server_keeps_serving_after_errors(edge_agent):
    with HybridClient(edge_agent.address) as client:
        with pytest.raises(RequestFailed):
            client.complete(prompt="", max_new_tokens=4)
        assert client.complete(prompt="Hello", max_new_tokens=3).token_ids


async def test_async_client_streams_the_same_answer(edge_agent):
    from hybrid.client import AsyncHybridClient

    async with AsyncHybridClient(edge_agent.address) as client:
        chunks = [c async for c in client.stream(messages=chat(PROMPTS[5]), max_new_tokens=8)]
        load = await client.load()
        with pytest.raises(RequestFailed) as failure:
            await client.complete(prompt="hi", top_p=2.0)
    with HybridClient(edge_agent.address) as sync_client:
        expected = sync_client.complete(messages=chat(PROMPTS[5]), max_new_tokens=8)
    assert [t for c in chunks for t in c.token_ids] == expected.token_ids
    assert chunks[-1].finish_reason in (pb.STOP, pb.LENGTH)
    assert load.capacity == 32
    assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_fp16_artifact_serves_min_precision_full(tmp_path, torch_greedy):
    from edge_agent.artifacts.export import export_artifact
    from tests.conftest import start_agent

    folder, manifest = export_artifact(precision="fp16", out=tmp_path / "fp16")
    assert manifest.full_precision and manifest.quality.passed
    agent = start_agent(folder, tmp_path)
    try:
        with HybridClient(agent.address) as client:
            answer = client.complete(messages=chat(PROMPTS[0]), max_new_tokens=8, full_precision=True)
        assert answer.served_by.precision == "fp16"
        assert common_prefix(answer.token_ids, torch_greedy(PROMPTS[0], 8)) >= 4
    finally:
        agent.stop()


async def test_an_agent_that_cannot_start_stops_what_it_had_started(lean_int4_artifact, tmp_path):
    from edge_agent.config import EdgeAgentConfig
    from edge_agent.server import EdgeAgent
    from hybrid.engine import gc_pauses
    from hybrid.serving.ports import PortTakenError

    with socket.create_server(("127.0.0.1", 0)) as holder:
        taken = holder.getsockname()[1]
        agent = EdgeAgent(
            EdgeAgentConfig(
                artifact=lean_int4_artifact, port=0, region="test-region", discovery="none", metrics_port=taken
            )
        )
        serving_before = gc_pauses._watch().serving
        with pytest.raises(PortTakenError, match=f"could not bind 127.0.0.1:{taken}.*choose another --metrics-port"):
            await agent.start()
    assert not agent.engine.running
    assert gc_pauses._watch().serving == serving_before
    with socket.create_server(("127.0.0.1", agent.shell.port)):  # its gRPC port is free again
        pass
