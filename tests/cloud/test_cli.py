"""`hybrid cloud serve` as an operator runs it: its own local Ray cluster, in a process of its own."""

from __future__ import annotations

import yaml

from hybrid.client import HybridClient
from hybrid.v1 import inference_pb2 as pb
from tests.conftest import running_hybrid


def test_hybrid_cloud_serve_registers_streams_and_deregisters(tmp_path):
    """The command an operator runs: its own Ray cluster, the static discovery file, clean Ctrl-C."""
    discovery = tmp_path / "discovery.yaml"
    args = ["cloud", "serve", "--port", "0", "--tier", "public", "--region", "test-public", "--device", "cpu"]
    args += ["--discovery", f"static:{discovery}", "--num-gpus", "0", "--num-cpus", "0", "--ray-cpus", "1"]
    args += ["--cost-per-hour", "2.5", "--max-batch-size", "4"]
    with running_hybrid(*args, ready_timeout_s=240) as (process, address):
        services = yaml.safe_load(discovery.read_text())["services"]
        assert len(services) == 1, "one replica, one record: the replica on its own port"
        service = services[0]
        assert service["Tags"][0] == "tier:public" and service["Meta"]["cost_per_hour"] == "2.5"
        assert service["Meta"]["serve_replica"] and service["Port"] >= 40000
        replica = f"{service['Address']}:{service['Port']}"
        for target in (replica, address):  # the replica's own port, and Serve's proxy for other clients
            with HybridClient(target) as client:
                answer = client.complete(prompt="Hello", max_new_tokens=4)
            assert answer.served_by.tier == pb.PUBLIC and answer.token_ids
            assert answer.served_by.replica_id == service["ID"]
        process.send_signal(2)
        assert process.wait(timeout=60) == 0
    assert yaml.safe_load(discovery.read_text())["services"] == []
