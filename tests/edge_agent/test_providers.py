"""Where the edge model runs: the CUDA provider when the edge-gpu extra is installed, the CPU otherwise, and a
warning whenever a node with a GPU ends up on the CPU."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from edge_agent import runtime
from edge_agent.runtime import check_placement, pick_providers

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@pytest.fixture
def providers_here(monkeypatch):
    def set_up(available: list[str], gpu: bool) -> None:
        monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: available)
        monkeypatch.setattr(runtime, "gpu_present", lambda: gpu)

    return set_up


def test_cuda_comes_first_where_onnxruntime_gpu_is_installed(providers_here):
    providers_here([CUDA, CPU], gpu=True)
    assert pick_providers() == [CUDA, CPU]
    assert pick_providers(device="cpu") == [CPU]


def test_a_node_with_a_gpu_but_cpu_onnxruntime_warns_and_runs_on_the_cpu(providers_here, caplog):
    providers_here([CPU], gpu=True)
    with caplog.at_level(logging.WARNING, logger="hybrid.edge"):
        assert pick_providers() == [CPU]
    assert "Install the edge-gpu extra" in caplog.text


def test_a_node_without_a_gpu_runs_on_the_cpu_quietly(providers_here, caplog):
    providers_here([CPU], gpu=False)
    with caplog.at_level(logging.WARNING, logger="hybrid.edge"):
        assert pick_providers() == [CPU]
    assert not caplog.records


def test_device_cuda_without_the_provider_refuses_to_start_and_says_what_to_install(providers_here):
    providers_here([CPU], gpu=True)
    with pytest.raises(RuntimeError, match="install the edge-gpu extra"):
        pick_providers(device="cuda")


def test_a_cuda_provider_that_could_not_start_is_a_warning_or_for_device_cuda_an_error(caplog):
    fell_back = SimpleNamespace(get_providers=lambda: [CPU])
    with caplog.at_level(logging.WARNING, logger="hybrid.edge"):
        assert check_placement(fell_back, [CUDA, CPU]) == "cpu"
    assert "could not start its CUDA provider" in caplog.text
    with pytest.raises(RuntimeError, match="refuses to run on the CPU"):
        check_placement(fell_back, [CUDA, CPU], device="cuda")
    on_gpu = SimpleNamespace(get_providers=lambda: [CUDA, CPU])
    assert check_placement(on_gpu, [CUDA, CPU], device="cuda") == "cuda"
