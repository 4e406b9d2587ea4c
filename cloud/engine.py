"""The cloud tier's engine: the full model on PyTorch under hybrid.engine.continuous's continuous batching.

Running sequence ``i`` is cache slot ``i`` of StaticCacheLlama; joiners take the slots after the
running rows, and rows that leave are compacted away. Greedy rows take the argmax computed on the
device; rows that sample get their logits on the host and go through the same TokenSampler as the
edge agent, so temperature, top_p and seed mean the same thing on every tier.
"""

from __future__ import annotations

import logging
import time

import torch

from cloud.config import CloudConfigError, ReplicaSettings
from cloud.model import StaticCacheLlama, StepOutput
from hybrid.engine.continuous import ContinuousBatchingEngine, Sequence
from hybrid.engine.metrics import ReplicaMetrics
from hybrid.models.registry import end_token_ids, load_tokenizer, resolve_model
from hybrid.protocol import ServedBy, Tier

log = logging.getLogger(__name__)


class TorchEngine(ContinuousBatchingEngine):
    thread_name = "cloud-engine"

    def __init__(self, model: StaticCacheLlama, tokenizer, overlap_steps: bool | None = None, **settings):
        settings.setdefault("max_batch_size", model.max_batch)
        if settings["max_batch_size"] > model.max_batch:
            raise ValueError(
                f"max_batch_size {settings['max_batch_size']} exceeds the model's {model.max_batch} cache slots"
            )
        settings.setdefault("max_context_tokens", model.max_context)
        super().__init__(tokenizer, **settings)
        self.model = model
        # A GPU's launches return at once; on a CPU a step is done when its call returns.
        self.overlaps_steps = model.device.type == "cuda" if overlap_steps is None else overlap_steps

    def _pick(self, rows: list[Sequence], logits: torch.Tensor, greedy: torch.Tensor | None) -> list[int]:
        if greedy is None:
            greedy = logits.argmax(dim=-1)
        picked = greedy[: len(rows)].tolist()
        for i, seq in enumerate(rows):
            if not seq.sampler.greedy:
                picked[i] = seq.sampler.pick(logits[i].float().cpu().numpy())
        return picked

    def _prefill(self, joiners: list[Sequence]) -> list[int]:
        logits = self.model.prefill([s.prompt_ids for s in joiners], first_slot=len(self.rows))
        return self._pick(joiners, logits, None)

    def _decode(self, rows: list[Sequence]) -> list[int]:
        return self._finish_decode(rows, self._start_decode(rows))

    def _start_decode(self, rows: list[Sequence]) -> StepOutput:
        return self.model.decode([s.next_token for s in rows], [s.cached for s in rows])

    def _finish_decode(self, rows: list[Sequence], started: StepOutput) -> list[int]:
        return self._pick(rows, started.logits, started.tokens)

    def _keep(self, indices: list[int]) -> None:
        # Called after self.rows was narrowed to the kept rows, in the same order as indices.
        self.model.move_rows(indices, [s.cached + 1 for s in self.rows])


def _device(settings: ReplicaSettings) -> torch.device:
    if settings.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise CloudConfigError("device cuda was asked but no GPU is visible to this replica: use device auto or cpu")
    return torch.device(settings.device)


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def build_engine(settings: ReplicaSettings, replica_id: str, metrics: ReplicaMetrics | None = None) -> TorchEngine:
    """Loads the model the settings name and wraps it in a TorchEngine (not started)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    device = _device(settings)
    precision = settings.precision if settings.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    resolved = resolve_model(settings.model)
    tokenizer = load_tokenizer(resolved.hf_dir)
    if settings.random_weights:
        config = AutoConfig.from_pretrained(resolved.hf_dir)
        with device:  # initialising on the GPU takes seconds where the CPU takes minutes for 1B weights
            hf_model = AutoModelForCausalLM.from_config(config, dtype=_DTYPES[precision])
        end_ids: set[int] = set()
    else:
        hf_model = AutoModelForCausalLM.from_pretrained(resolved.hf_dir, dtype=_DTYPES[precision])
        end_ids = end_token_ids(resolved.hf_dir, tokenizer)
    window = getattr(hf_model.config, "max_position_embeddings", None) or settings.max_context_tokens
    model = StaticCacheLlama(
        hf_model,
        max_batch=settings.max_batch_size,
        max_context=min(settings.max_context_tokens, window),
        device=device,
        dtype=_DTYPES[precision],
    )
    del hf_model
    if device.type == "cuda" and settings.prefill_warmup_tokens:
        started = time.monotonic()
        shapes = model.warm_prefill(settings.prefill_warmup_tokens)
        log.info("warmed %d prefill shapes in %.1f s", len(shapes), time.monotonic() - started)
    tier = Tier.parse(settings.tier)
    label = precision + ("-random" if settings.random_weights else "")
    return TorchEngine(
        model,
        tokenizer,
        overlap_steps=None if settings.overlap_decode_steps else False,
        served_by=ServedBy(tier, replica_id, settings.region, label),
        model_name=resolved.name,
        full_precision=not settings.random_weights,
        end_ids=end_ids,
        metrics=metrics,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queued_requests=settings.max_queued_requests,
    )
