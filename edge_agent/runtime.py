"""ONNX Runtime over an exported decoder with KV cache (optimum's text-generation-with-past layout).

``OnnxCausalLM.forward`` runs one step for a batch. The KV cache stays in ONNX Runtime's own
buffers between steps: present tensors come back as OrtValues bound straight into the next step's
inputs, so no per-step copy goes through numpy. Only the last position's logits are copied out.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger("hybrid.edge")

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_PAST_RE = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
_ORT_TO_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def default_thread_count() -> int:
    """Physical cores available to this process: decoding is memory bound, so SMT threads only contend."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or available
    except ImportError:
        physical = available
    return max(1, min(available, physical))


def session_options(num_threads: int | None, spinning: bool = False) -> ort.SessionOptions:
    """All graph optimizations, one intra-op thread per physical core unless told, one inter-op thread.

    With ``spinning`` the intra-op workers spin between the operators of a step: the lean graph's decode steps
    follow each other back to back, and spinning through a step's ~400 short operators saves a wake-up each;
    between steps the engine thread's own work is short too."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = num_threads or default_thread_count()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def gpu_present() -> bool:
    """Whether this machine shows an NVIDIA GPU (its driver's device node or tool)."""
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def pick_providers(prefer_gpu: bool = True, device: str = "auto") -> list[str]:
    """ONNX Runtime providers for ``device`` (auto, cpu or cuda); the CPU always last, as the fallback."""
    if device == "cpu" or not prefer_gpu:
        return [_CPU]
    if _CUDA in ort.get_available_providers():
        _load_cuda_libraries()
        return [_CUDA, _CPU]
    if device == "cuda":
        raise RuntimeError(
            "device cuda asked, but this ONNX Runtime has no CUDA provider: install the edge-gpu extra "
            "(onnxruntime-gpu in place of onnxruntime), or set device to auto or cpu"
        )
    if gpu_present():
        log.warning(
            "this node has an NVIDIA GPU, but its ONNX Runtime has no CUDA provider: the model runs on the CPU. "
            "Install the edge-gpu extra (onnxruntime-gpu in place of onnxruntime) to use the GPU"
        )
    return [_CPU]


@functools.cache
def _load_cuda_libraries() -> None:
    """Loads the CUDA and cuDNN libraries that onnxruntime-gpu's ``cuda`` and ``cudnn`` extras install as wheels
    (ONNX Runtime's own ``preload_dlls``): the CUDA provider finds them by name, and a wheel's folder is on no
    search path. Libraries already on the node's search path serve too; what is missing shows when the session
    starts (``check_placement``)."""
    if not hasattr(ort, "preload_dlls"):
        return
    try:
        ort.preload_dlls()
    except Exception as error:  # noqa: BLE001 - a failed preload leaves the default search, which check_placement reports
        log.debug("onnxruntime.preload_dlls failed: %s", error)


def check_placement(session: ort.InferenceSession, providers: list[str], device: str = "auto") -> str:
    """The device the session runs on ("cuda" or "cpu"); warns (or, for device cuda, raises) when the CUDA
    provider was asked for and ONNX Runtime fell back to the CPU, as it does when CUDA or cuDNN fail to load."""
    placed = "cuda" if session.get_providers()[0] == _CUDA else "cpu"
    if _CUDA in providers and placed == "cpu":
        message = (
            "ONNX Runtime could not start its CUDA provider (check that the CUDA and cuDNN libraries its build needs and "
            "the driver are there; its log above says which failed)"
        )
        if device == "cuda":
            raise RuntimeError(message + "; device cuda refuses to run on the CPU")
        log.warning(message + ": the model runs on the CPU")
    return placed


@dataclass
class KVCache:
    """Per-layer key and value tensors, shape [batch, kv_heads, length, head_dim], as OrtValues."""

    values: list[ort.OrtValue]

    @property
    def batch(self) -> int:
        return self.values[0].shape()[0]

    @property
    def length(self) -> int:
        return self.values[0].shape()[2]

    def to_numpy(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.values]


class OnnxCausalLM:
    def __init__(
        self,
        model_path: Path,
        num_threads: int | None = None,
        providers: list[str] | None = None,
        device: str = "auto",
    ):
        self.providers = providers or pick_providers(device=device)
        self.session = ort.InferenceSession(
            str(model_path), sess_options=session_options(num_threads), providers=self.providers
        )
        self.device = check_placement(self.session, self.providers, device)

        inputs = {i.name: i for i in self.session.get_inputs()}
        layers: dict[int, dict[str, str]] = {}
        for name in inputs:
            match = _PAST_RE.match(name)
            if match:
                layers.setdefault(int(match.group(1)), {})[match.group(2)] = name
        if not layers or "input_ids" not in inputs:
            raise ValueError(f"{model_path} is not a decoder exported with KV cache (no past_key_values inputs)")
        self.num_layers = len(layers)
        self.past_names = [layers[i][kind] for i in range(self.num_layers) for kind in ("key", "value")]
        self.present_names = [n.replace("past_key_values", "present") for n in self.past_names]
        first = inputs[self.past_names[0]]
        self.kv_heads = int(first.shape[1])
        self.head_dim = int(first.shape[3])
        self.kv_dtype = _ORT_TO_NUMPY[first.type]
        self.has_position_ids = "position_ids" in inputs
        # Exports by `hybrid export` compute logits for the last positions only when asked.
        self.has_logits_to_keep = "num_logits_to_keep" in inputs
        self.vocab_size = int(self.session.get_outputs()[0].shape[-1])

    def empty_cache(self, batch: int) -> KVCache:
        empty = np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=self.kv_dtype)
        return KVCache([ort.OrtValue.ortvalue_from_numpy(empty) for _ in self.past_names])

    def cache_from_numpy(self, arrays: list[np.ndarray]) -> KVCache:
        return KVCache([ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)) for a in arrays])

    def forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        position_ids: np.ndarray,
        cache: KVCache,
        all_logits: bool = False,
    ) -> tuple[np.ndarray, KVCache]:
        """One step. Returns logits ([batch, vocab] for the last position, or [batch, seq, vocab]) and the grown cache."""
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids, dtype=np.int64))
        binding.bind_cpu_input("attention_mask", np.ascontiguousarray(attention_mask, dtype=np.int64))
        if self.has_position_ids:
            binding.bind_cpu_input("position_ids", np.ascontiguousarray(position_ids, dtype=np.int64))
        if self.has_logits_to_keep:
            keep = input_ids.shape[1] if all_logits else 1
            binding.bind_cpu_input("num_logits_to_keep", np.array([keep], np.int64))
        for name, value in zip(self.past_names, cache.values):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", self.device)
        for name in self.present_names:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        logits = outputs[0].numpy()
        return (logits if all_logits else logits[:, -1, :]), KVCache(list(outputs[1:]))
