"""The lean decoder graph under ONNX Runtime against the same tiny Llama in PyTorch: chunked prefill, rows in
slots, buffers that grow. Fast: a two-layer random model, no export."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.artifacts.lean_graph import DecoderShape, LeanWeights
from edge_agent.lean_runtime import LeanDecoder, _prefill_groups
from tests.edge_agent.tiny_llama import CONFIG, make_tiny_llama

FP32 = LeanWeights(projection_bits=None, head_bits=None)


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_llama()


@pytest.fixture(scope="module")
def fp32_graph(tiny, tmp_path_factory):
    return tiny.lean_model(tmp_path_factory.mktemp("lean"), FP32, "fp32")


def prompt(length: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(1, CONFIG["vocab_size"], length).tolist()


def test_prefill_in_chunks_gives_the_pytorch_logits_at_every_position(tiny, fp32_graph):
    decoder = LeanDecoder(fp32_graph, providers=["CPUExecutionProvider"], prefill_chunk=4)
    ids = prompt(11, seed=1)
    np.testing.assert_allclose(decoder.prefill(0, ids, all_logits=True), tiny.logits(ids), atol=1e-4)


def test_rows_in_scattered_slots_follow_their_own_greedy_paths(tiny, fp32_graph):
    decoder = LeanDecoder(fp32_graph, providers=["CPUExecutionProvider"], prefill_chunk=8)
    prompts = {0: prompt(5, seed=2), 2: prompt(19, seed=3), 3: prompt(12, seed=4)}  # slot 1 stays free
    slots = list(prompts)
    first = decoder.prefill_many(slots, [prompts[s] for s in slots]).argmax(-1).tolist()
    produced = {slot: [token] for slot, token in zip(slots, first)}
    for _ in range(6):
        logits = decoder.decode(
            slots, [produced[s][-1] for s in slots], [len(prompts[s]) + len(produced[s]) - 1 for s in slots]
        )
        for slot, token in zip(slots, logits.argmax(-1).tolist()):
            produced[slot].append(token)
    for slot in slots:
        assert produced[slot] == tiny.greedy(prompts[slot], 7), f"slot {slot}"


def test_a_freed_slot_takes_a_new_prompt_without_the_old_one_showing_through(tiny, fp32_graph):
    decoder = LeanDecoder(fp32_graph, providers=["CPUExecutionProvider"])
    decoder.prefill(0, prompt(30, seed=5))
    short = prompt(4, seed=6)
    token = int(decoder.prefill(0, short).argmax())
    answer = [token]
    for step in range(4):
        answer.append(int(decoder.decode([0], [answer[-1]], [len(short) + step])[0].argmax()))
    assert answer == tiny.greedy(short, 5)


def test_buffers_grow_in_slots_and_capacity_and_keep_what_they_hold(tiny, fp32_graph):
    decoder = LeanDecoder(fp32_graph, providers=["CPUExecutionProvider"], max_slots=4, max_context=600)
    early = prompt(6, seed=7)
    early_next = int(decoder.prefill(0, early).argmax())
    assert (decoder.slots, decoder.capacity) == (1, 64)
    long = prompt(300, seed=8)
    np.testing.assert_allclose(decoder.prefill(3, long, all_logits=True), tiny.logits(long), atol=1e-4)
    assert decoder.slots == 4 and decoder.capacity == 320
    # Slot 0's cache moved into the grown buffers with its tokens.
    logits = decoder.decode([0], [early_next], [len(early)])
    np.testing.assert_allclose(logits[0], tiny.logits([*early, early_next])[-1], atol=1e-4)


def test_more_than_the_runtime_holds_is_refused_with_the_limits(fp32_graph):
    decoder = LeanDecoder(fp32_graph, providers=["CPUExecutionProvider"], max_slots=2, max_context=64)
    with pytest.raises(ValueError, match="exceeds the 64-token context"):
        decoder.prefill(0, prompt(65, seed=9))
    with pytest.raises(ValueError, match="2 slots of 64 tokens"):
        decoder.prefill(2, prompt(3, seed=9))


def test_prompts_in_neighbouring_slots_of_like_lengths_are_prefilled_together():
    lengths = {0: 64, 1: 60, 2: 64, 4: 64, 5: 8}
    slots = list(lengths)
    groups = _prefill_groups(slots, [[1] * lengths[s] for s in slots], chunk=256)
    # 3 is not taken (4 starts a new group); 5 is far shorter than 4, padding it would waste most of its work.
    assert [[slots[i] for i in group] for group in groups] == [[0, 1, 2], [4], [5]]


def test_a_prefill_call_holds_at_most_512_tokens_of_prompts():
    slots = list(range(12))
    groups = _prefill_groups(slots, [[1] * 100] * 12, chunk=256)
    assert [len(group) for group in groups] == [5, 5, 2]
    # Longer prompts go in chunks: the chunk, not the prompt, is what one call holds.
    assert [len(g) for g in _prefill_groups(slots[:4], [[1] * 1000] * 4, chunk=256)] == [2, 2]


def test_a_model_the_lean_graph_does_not_cover_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="export this model with an optimum precision"):
        DecoderShape.from_config({**CONFIG, "model_type": "gpt2"})
    with pytest.raises(ValueError, match="rope_scaling"):
        DecoderShape.from_config({**CONFIG, "rope_scaling": {"type": "linear", "factor": 2.0}})
