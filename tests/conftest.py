"""Shared fixtures: the real model, real artifacts and a real edge agent on loopback; and the fast/slow split.

Every test that needs something heavy (the real model, an export, a Ray cluster, an agent process, an
install, Terraform) is marked ``slow`` here, so that ``pytest -m "not slow"`` is the fast layer: fakes, plain
objects and loopback gRPC in seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("CHECKPOINT_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402

from edge_agent.artifacts.quality import agreement_prompts  # noqa: E402
from hybrid import constants  # noqa: E402

# The chat prompts used wherever outputs are compared with the PyTorch model.
PROMPTS = agreement_prompts()

# Fixtures that take seconds to minutes; a test that uses one, directly or through another fixture, is slow.
HEAVY_FIXTURES = {
    # the real model
    "resolved_model",
    "tokenizer",
    "torch_model",
    "torch_greedy",
    "cloud_engine",
    # exported artifacts, and the agents that serve them
    "int8_artifact",
    "fp32_artifact",
    "lean_int4_artifact",
    "lean_fp32_artifact",
    "edge_agent",
    "fp32_agent",
    "lean_agent",
    # a local Ray cluster with Serve
    "serve_cluster",
    "private_app",
    # the project's wheel, for installs
    "edge_wheel",
    # Terraform init, validate and apply
    "terraform_copy",
    "tier_spec",
}
# Modules whose tests start something heavy themselves: `hybrid cloud serve` with its own Ray cluster. (The edge
# node's agent, install and update modules mark themselves.)
HEAVY_MODULES = {Path(__file__).resolve().parent / "cloud" / "test_cli.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HEAVY_FIXTURES.intersection(getattr(item, "fixturenames", ())) or item.path.resolve() in HEAVY_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def resolved_model():
    from hybrid.models import resolve_model

    return resolve_model(constants.DEFAULT_MODEL)


@pytest.fixture(scope="session")
def tokenizer(resolved_model):
    from hybrid.models import load_tokenizer

    return load_tokenizer(resolved_model.hf_dir)


@pytest.fixture(scope="session")
def torch_model(resolved_model):
    from hybrid.models import load_torch_model

    return load_torch_model(resolved_model.hf_dir)


@pytest.fixture(scope="session")
def torch_greedy(torch_model, tokenizer):
    """PyTorch greedy continuation of a chat prompt: the reference every runtime is compared with."""
    import torch

    cache: dict[tuple[str, int], list[int]] = {}

    def run(prompt: str, max_new_tokens: int = 16) -> list[int]:
        key = (prompt, max_new_tokens)
        if key not in cache:
            ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=False
            )
            with torch.inference_mode():
                out = torch_model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.eos_token_id,
                )
            tokens = out[0, ids.shape[1] :].tolist()
            cache[key] = [t for t in tokens if t != tokenizer.eos_token_id]
        return cache[key]

    return run


def exported(tmp_path_factory, precision: str):
    """The default model's artifact of ``precision``, exported once a test session."""
    from edge_agent.artifacts.export import export_artifact

    folder, _ = export_artifact(precision=precision, out=tmp_path_factory.mktemp("artifacts") / precision)
    return folder


@pytest.fixture(scope="session")
def int8_artifact(tmp_path_factory):
    return exported(tmp_path_factory, "int8")


@pytest.fixture(scope="session")
def fp32_artifact(tmp_path_factory):
    return exported(tmp_path_factory, "fp32")


@pytest.fixture(scope="session")
def lean_int4_artifact(tmp_path_factory):
    return exported(tmp_path_factory, "lean-int4")


@pytest.fixture(scope="session")
def lean_fp32_artifact(tmp_path_factory):
    return exported(tmp_path_factory, "lean-fp32")


def start_agent(artifact, tmp_path, **overrides):
    from edge_agent.config import EdgeAgentConfig
    from edge_agent.server import BackgroundEdgeAgent

    settings = {"port": 0, "region": "test-region", "discovery": f"static:{tmp_path / 'discovery.yaml'}", **overrides}
    return BackgroundEdgeAgent(EdgeAgentConfig(artifact=artifact, **settings))


@pytest.fixture(scope="session")
def edge_agent(int8_artifact, tmp_path_factory):
    agent = start_agent(int8_artifact, tmp_path_factory.mktemp("edge"), metrics_port=0)
    yield agent
    agent.stop()


@pytest.fixture(scope="session")
def fp32_agent(fp32_artifact, tmp_path_factory):
    agent = start_agent(fp32_artifact, tmp_path_factory.mktemp("edge-fp32"))
    yield agent
    agent.stop()


@pytest.fixture(scope="session")
def lean_agent(lean_int4_artifact, tmp_path_factory):
    agent = start_agent(lean_int4_artifact, tmp_path_factory.mktemp("edge-lean"))
    yield agent
    agent.stop()


class ServeCluster:
    """The session's local Ray cluster with Serve's gRPC proxy on one loopback port."""

    def __init__(self, port: int):
        self.port = port
        self.address = f"127.0.0.1:{port}"

    def deploy(self, app_name: str, deployment=None, **settings) -> str:
        from cloud.config import DeploymentSettings, ReplicaSettings
        from cloud.server import deploy

        replica = ReplicaSettings(**{"region": "test-cloud-region", "device": "cpu", "max_batch_size": 8, **settings})
        deploy(replica, deployment or DeploymentSettings(num_gpus=0, num_cpus=0), app_name)
        return app_name

    def record(self, app_name: str, tier: str):
        """How `hybrid cloud serve` registers an application of this cluster."""
        from hybrid.discovery import ReplicaRecord

        return ReplicaRecord(
            id=f"cloud-{app_name}",
            address="127.0.0.1",
            port=self.port,
            tier=tier,
            model=constants.DEFAULT_MODEL,
            precision="fp32",
            region="test-cloud-region",
            capacity=8,
            application=app_name,
        )

    def delete(self, app_name: str) -> None:
        from ray import serve

        serve.delete(app_name)

    def handle(self, app_name: str):
        from ray import serve

        return serve.get_app_handle(app_name)


@pytest.fixture(scope="module")
def serve_cluster(resolved_model):
    """A local Ray cluster with Serve for the tests of one module (starting one takes ~10 s and ~1.3 GB).

    Module-scoped, not session-scoped: tests that start a cluster of their own (`hybrid up`,
    `hybrid cloud serve` in a subprocess) must not find another one busy on these two cores, or
    Ray's fixed 30 s node start-up limit runs out."""
    import ray
    from ray import serve

    from cloud.server import free_port, init_ray, start_serve

    init_ray(num_cpus=2, direct=True)
    port = free_port()
    start_serve(port)
    yield ServeCluster(port)
    serve.shutdown()
    ray.shutdown()


@contextmanager
def running_hybrid(*args: str, ready_timeout_s: float = 180, ready_marker: str = "ready on "):
    """Runs ``hybrid ARGS`` as a user would; yields (process, address) once it logs that it is ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hybrid.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        address = ""
        deadline = time.monotonic() + ready_timeout_s
        while not address and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line or process.poll() is None, f"hybrid {args[0]} exited before it was ready"
            if ready_marker in line:
                address = line.split(ready_marker)[1].split()[0]
        assert address.startswith("127.0.0.1:"), "no loopback 'ready on' line"
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
