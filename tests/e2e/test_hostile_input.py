"""Hostile input against a real router process: oversized fields and bodies are refused with a clear error,
the router serves on, and its memory returns near where it was."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import grpc
import pytest

from hybrid.bench.processes import ServerProcess
from hybrid.bench.synthetic import SyntheticReplica, SyntheticReplicaConfig
from hybrid.client import HybridClient, RequestFailed, build_request
from hybrid.router.server import Router, RouterConfig
from hybrid.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

# What a few dozen refused requests may leave behind in the router's resident memory.
RSS_SLACK_MB = 25


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def router():
    with tempfile.TemporaryDirectory() as folder:
        discovery = f"static:{Path(folder) / 'discovery.yaml'}"
        replica = ServerProcess(SyntheticReplica, SyntheticReplicaConfig(replica_id="r", discovery=discovery), "r")
        process = ServerProcess(Router, RouterConfig(port=0, discovery=discovery), "router")
        try:
            yield process
        finally:
            process.stop(5)
            replica.stop(5)


def _answer(address: str) -> str:
    with HybridClient(address, timeout_s=10) as client:
        return client.complete(prompt="hello", max_new_tokens=4).served_by.replica_id


def _settled_rss_mb(pid: int, seconds: float = 3.0) -> float:
    """The least RSS over a few idle seconds: what the process holds once it has handed back what it freed."""
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(rss_mb(pid))
        time.sleep(0.2)
    return min(samples)


def test_oversized_fields_are_refused_and_memory_returns(router):
    address = router.address
    assert _answer(address) == "r"
    before = _settled_rss_mb(router.pid)
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 8 << 20)])
    stub = pb_grpc.InferenceStub(channel)
    for _ in range(3):
        # Within the largest message a server reads: refused by validation, naming the field.
        for field, size in [("affinity_key", 900_000), ("request_id", 900_000), ("client_region", 600_000)]:
            for _ in range(6):
                with pytest.raises(grpc.RpcError) as refused:
                    list(stub.Generate(build_request("hi", **{field: "k" * size}), timeout=10))
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert f"{field} is {size} characters long" in refused.value.details()
                assert len(refused.value.details()) < 300, "the refusal does not echo the field"
        # Larger than any valid request: refused by gRPC before it is read, with both sizes named.
        for _ in range(6):
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.Generate(build_request("hi", affinity_key="k" * (4 << 20)), timeout=10))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "larger than max" in refused.value.details()
    channel.close()
    assert _answer(address) == "r", "the router serves on"
    after = _settled_rss_mb(router.pid)
    assert after - before < RSS_SLACK_MB, f"RSS {before:.0f} -> {after:.0f} MB"


def test_a_client_that_gives_up_leaves_nothing_behind(router):
    with HybridClient(router.address, timeout_s=0.05) as client:
        for _ in range(20):
            try:
                client.complete(prompt="hello", max_new_tokens=200)
            except RequestFailed as failure:
                assert failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _answer(router.address) == "r"
    assert os.path.exists(f"/proc/{router.pid}")
