"""The edge agent on ONNX Runtime's CUDA provider: runs only where a GPU answers and onnxruntime-gpu (the
edge-gpu extra) is installed; skipped elsewhere, saying so."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort
import pytest

from edge_agent.runtime import gpu_present

pytestmark = [
    pytest.mark.slow,
    pytest.mark.cuda,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers() or not gpu_present(),
        reason="needs an NVIDIA GPU and onnxruntime-gpu (pip install 'hybrid-inference[edge-gpu]')",
    ),
]


@pytest.fixture(scope="module")
def gpu_artifact(tmp_path_factory):
    """The lean-int4-fp16 artifact: exported here, or, as a GPU node gets it, exported elsewhere and named by
    HYBRID_TEST_GPU_ARTIFACT."""
    from edge_agent.artifacts.export import export_artifact

    given = os.environ.get("HYBRID_TEST_GPU_ARTIFACT")
    if given:
        return Path(given)
    folder, _ = export_artifact(precision="lean-int4-fp16", out=tmp_path_factory.mktemp("artifacts") / "gpu")
    return folder


def test_the_lean_graph_runs_on_the_gpu_with_its_kv_buffers_in_device_memory(gpu_artifact, tokenizer, torch_greedy):
    from edge_agent.artifacts.manifest import MODEL_FILE
    from edge_agent.lean_runtime import LeanDecoder
    from tests.conftest import PROMPTS
    from tests.edge_agent.test_lean_artifacts import AGREEMENT_TOKENS, lean_greedy

    runtime = LeanDecoder(gpu_artifact / MODEL_FILE, device="cuda")
    assert runtime.device == "cuda" and runtime.session.get_providers()[0] == "CUDAExecutionProvider"
    assert all(not hasattr(buffer, "ctypes") for buffer in runtime._buffers), "KV buffers must be device memory"
    answers = lean_greedy(gpu_artifact, tokenizer, device="cuda")
    identical = sum(answers[p] == torch_greedy(p, AGREEMENT_TOKENS) for p in PROMPTS)
    assert identical >= len(PROMPTS) // 4, answers


def test_an_agent_with_device_cuda_streams_an_answer_from_the_gpu(gpu_artifact, tmp_path):
    from hybrid.client import HybridClient
    from tests.conftest import PROMPTS, start_agent
    from tests.edge_agent.test_server import chat

    agent = start_agent(gpu_artifact, tmp_path, device="cuda")
    try:
        assert agent.agent.engine.runtime.device == "cuda"
        with HybridClient(agent.address) as client:
            chunks = list(client.stream(messages=chat(PROMPTS[0]), max_new_tokens=16))
        assert len(chunks) > 1 and chunks[-1].served_by.precision == "lean-int4-b32-fp16"
    finally:
        agent.stop()
