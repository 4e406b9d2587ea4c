"""Token selection shared by every engine, so an edge and a cloud replica pick tokens the same way.

temperature 0 is greedy (argmax). Otherwise logits are divided by the temperature, cut to the
smallest set whose probability mass reaches top_p, and sampled with a per-request generator seeded
from ``seed`` (reproducible on one replica).
"""

from __future__ import annotations

import numpy as np


class TokenSampler:
    def __init__(self, temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None):
        self.temperature = temperature
        self.top_p = top_p
        self._rng = np.random.default_rng(seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def pick(self, logits: np.ndarray) -> int:
        """Chooses the next token from one row of logits (shape [vocab])."""
        if self.greedy:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / self.temperature
        scaled -= scaled.max()
        probs = np.exp(scaled)
        probs /= probs.sum()
        if self.top_p < 1.0:
            order = np.argsort(-probs)
            cumulative = np.cumsum(probs[order])
            # Keep tokens up to and including the one that reaches top_p.
            keep = order[: int(np.searchsorted(cumulative, self.top_p) + 1)]
            kept = probs[keep] / probs[keep].sum()
            return int(keep[self._rng.choice(len(keep), p=kept)])
        return int(self._rng.choice(len(probs), p=probs))


def pick_tokens(samplers: list[TokenSampler], logits: np.ndarray) -> list[int]:
    """Picks one token per row of ``logits`` (shape [batch, vocab]); greedy rows share one argmax."""
    greedy_rows = [i for i, s in enumerate(samplers) if s.greedy]
    picked = [0] * len(samplers)
    if greedy_rows:
        best = np.argmax(logits[greedy_rows], axis=-1)
        for row, token in zip(greedy_rows, best.tolist()):
            picked[row] = token
    for i, sampler in enumerate(samplers):
        if not sampler.greedy:
            picked[i] = sampler.pick(logits[i])
    return picked
