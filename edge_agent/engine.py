"""Continuous batching over OnnxCausalLM (the scheduling itself is hybrid.engine.continuous's).

The running batch keeps one KV cache, left-padded to a common length with an attention mask;
each row carries its own position ids. Joiners are prefilled together and merged into it; rows
that leave are cut out, and columns that are padding in every remaining row are dropped.
"""

from __future__ import annotations

import numpy as np

from edge_agent.runtime import KVCache, OnnxCausalLM
from hybrid.engine.continuous import ContinuousBatchingEngine, Sequence
from hybrid.engine.sampling import pick_tokens


class GenerationEngine(ContinuousBatchingEngine):
    thread_name = "edge-engine"

    def __init__(self, runtime: OnnxCausalLM, tokenizer, **settings):
        super().__init__(tokenizer, **settings)
        self.runtime = runtime
        self._cache: KVCache | None = None
        self._mask: np.ndarray | None = None

    def _prefill(self, joiners: list[Sequence]) -> list[int]:
        longest = max(len(s.prompt_ids) for s in joiners)
        ids = np.zeros((len(joiners), longest), np.int64)
        mask = np.zeros((len(joiners), longest), np.int64)
        for row, seq in enumerate(joiners):
            n = len(seq.prompt_ids)
            ids[row, longest - n :] = seq.prompt_ids
            mask[row, longest - n :] = 1
        positions = np.maximum(mask.cumsum(-1) - 1, 0)
        logits, cache = self.runtime.forward(ids, mask, positions, self.runtime.empty_cache(len(joiners)))
        self._merge(cache, mask)
        return pick_tokens([s.sampler for s in joiners], logits)

    def _decode(self, rows: list[Sequence]) -> list[int]:
        assert self._cache is not None and self._mask is not None
        ids = np.array([[s.next_token] for s in rows], np.int64)
        positions = np.array([[s.cached] for s in rows], np.int64)
        self._mask = np.concatenate([self._mask, np.ones((len(rows), 1), np.int64)], axis=1)
        logits, self._cache = self.runtime.forward(ids, self._mask, positions, self._cache)
        return pick_tokens([s.sampler for s in rows], logits)

    def _merge(self, cache: KVCache, mask: np.ndarray) -> None:
        if self._cache is None or self._mask is None:
            self._cache, self._mask = cache, mask
            return
        length = max(self._cache.length, cache.length)
        merged = [
            np.concatenate([_left_pad(a, length, axis=2), _left_pad(b, length, axis=2)])
            for a, b in zip(self._cache.to_numpy(), cache.to_numpy())
        ]
        self._mask = np.concatenate([_left_pad(self._mask, length, axis=1), _left_pad(mask, length, axis=1)])
        self._cache = self.runtime.cache_from_numpy(merged)

    def _keep(self, indices: list[int]) -> None:
        if not indices or self._cache is None or self._mask is None:
            self._cache = self._mask = None
            return
        mask = self._mask[indices]
        # Columns that are padding in every remaining row are dropped.
        first = int(np.argmax(mask.any(axis=0)))
        arrays = [a[indices][:, :, first:, :] for a in self._cache.to_numpy()]
        self._cache, self._mask = self.runtime.cache_from_numpy(arrays), mask[:, first:]


def _left_pad(array: np.ndarray, length: int, axis: int) -> np.ndarray:
    missing = length - array.shape[axis]
    if missing == 0:
        return array
    widths = [(0, 0)] * array.ndim
    widths[axis] = (missing, 0)
    return np.pad(array, widths)
