from __future__ import annotations

import numpy as np

from hybrid.engine.sampling import TokenSampler, pick_tokens


def test_greedy_takes_the_argmax():
    logits = np.array([0.1, 3.0, 2.9, -1.0], np.float32)
    assert TokenSampler().pick(logits) == 1


def test_top_p_keeps_only_the_nucleus():
    # Probabilities about 0.64, 0.24, 0.09, 0.03: top_p 0.5 leaves only the first.
    logits = np.log(np.array([0.64, 0.24, 0.09, 0.03]))
    sampler = TokenSampler(temperature=1.0, top_p=0.5, seed=0)
    assert {sampler.pick(logits) for _ in range(200)} == {0}
    wider = TokenSampler(temperature=1.0, top_p=0.85, seed=0)
    assert {wider.pick(logits) for _ in range(400)} == {0, 1}


def test_temperature_sampling_follows_the_distribution_and_the_seed():
    logits = np.log(np.array([0.5, 0.3, 0.2]))
    draws = [TokenSampler(1.0, 1.0, seed=s).pick(logits) for s in range(3000)]
    frequencies = np.bincount(draws, minlength=3) / len(draws)
    assert np.allclose(frequencies, [0.5, 0.3, 0.2], atol=0.04)
    a, b = TokenSampler(0.8, 0.95, seed=11), TokenSampler(0.8, 0.95, seed=11)
    assert [a.pick(logits) for _ in range(20)] == [b.pick(logits) for _ in range(20)]


def test_pick_tokens_mixes_greedy_and_sampled_rows():
    logits = np.array([[0.0, 5.0, 0.0], [9.0, 0.0, 0.0]])
    samplers = [TokenSampler(), TokenSampler(temperature=0.01, seed=1)]
    assert pick_tokens(samplers, logits) == [1, 0]
