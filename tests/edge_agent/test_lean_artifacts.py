"""The lean decoder on the real model: its fp32 graph against PyTorch fp32, what its 4-bit artifact ships and how
well it agrees, and an edge agent serving it (streaming, continuous batching, the switch from optimum's int8)."""

from __future__ import annotations

import concurrent.futures
import gc
import json
import threading
import weakref

from edge_agent.artifacts.manifest import MODEL_FILE, read_manifest
from edge_agent.lean_runtime import LeanDecoder
from hybrid.client import HybridClient
from hybrid.engine import gc_pauses
from hybrid.v1 import inference_pb2 as pb
from tests.conftest import PROMPTS
from tests.edge_agent.test_server import chat, common_prefix

# As benchmarks/edge_decode.py compares engines: greedy answers of this many tokens, end of text respected.
AGREEMENT_TOKENS = 32


def folder_bytes(folder) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def lean_greedy(folder, tokenizer, device: str = "cpu") -> dict[str, list[int]]:
    """Every agreement prompt's greedy answer, all decoded together, one slot each, as the agent batches them."""
    prompts = [
        list(tokenizer.apply_chat_template(chat(p), add_generation_prompt=True, return_dict=False)) for p in PROMPTS
    ]
    runtime = LeanDecoder(folder / MODEL_FILE, max_slots=len(prompts), max_context=256, device=device)
    slots = list(range(len(prompts)))
    tokens = runtime.prefill_many(slots, prompts).argmax(-1).tolist()
    answers = [[t] for t in tokens]
    for step in range(AGREEMENT_TOKENS - 1):
        lengths = [len(p) + step for p in prompts]
        tokens = runtime.decode(slots, tokens, lengths).argmax(-1).tolist()
        for answer, token in zip(answers, tokens):
            answer.append(token)
    end = tokenizer.eos_token_id
    return {p: a[: a.index(end)] if end in a else a for p, a in zip(PROMPTS, answers)}


def test_the_lean_fp32_graph_gives_pytorch_fp32_greedy_tokens_on_the_agreement_prompts(
    lean_fp32_artifact, tokenizer, torch_greedy
):
    answers = lean_greedy(lean_fp32_artifact, tokenizer)
    for prompt in PROMPTS:
        assert answers[prompt] == torch_greedy(prompt, AGREEMENT_TOKENS), prompt


def test_the_lean_4_bit_artifact_passes_the_gate_at_under_60_percent_of_int8_and_records_its_agreement(
    lean_int4_artifact, int8_artifact, tokenizer, torch_greedy
):
    manifest = read_manifest(lean_int4_artifact)
    assert manifest.precision == "lean-int4-b32" and manifest.recipe["graph"] == "lean"
    assert manifest.quality.passed and manifest.quality.perplexity_increase <= 0.03
    # Teacher-forced: at 93% of the evaluation text's positions its next token is the full model's.
    assert manifest.quality.next_token_agreement >= 0.9
    assert folder_bytes(lean_int4_artifact) <= 0.6 * folder_bytes(int8_artifact)
    answers = lean_greedy(lean_int4_artifact, tokenizer)
    references = {p: torch_greedy(p, AGREEMENT_TOKENS) for p in PROMPTS}
    prefixes = [common_prefix(answers[p], references[p]) / max(1, len(references[p])) for p in PROMPTS]
    identical = sum(answers[p] == references[p] for p in PROMPTS)
    print(json.dumps({"identical_answers": identical, "prompts": len(PROMPTS), "common_prefix": prefixes}))
    # Free-running greedy answers drift from the full model's at the first near tie, and the int8 activations
    # inside MatMulNBits make that drift depend on the kernel path: measured 1 of 8 identical (31% common
    # prefix) with the 8 prompts decoded together, 4 of 8 (78%) one at a time. Recorded in docs/benchmarks.md.
    assert sum(prefixes) / len(prefixes) >= 0.2, prefixes


def test_an_agent_on_the_lean_graph_streams_batches_and_says_what_it_serves(lean_agent):
    engine = lean_agent.agent.engine
    engine.max_rows_in_step = 0
    with HybridClient(lean_agent.address) as client:
        chunks = list(client.stream(messages=chat(PROMPTS[0]), max_new_tokens=12))
        assert len(chunks) > 1 and chunks[-1].served_by.precision == "lean-int4-b32"
        with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
            # Different lengths, so that rows leave the batch while others run and freed slots are taken again.
            futures = [
                pool.submit(client.complete, messages=chat(p), max_new_tokens=6 + 2 * i) for i, p in enumerate(PROMPTS)
            ]
            answers = [f.result() for f in futures]
    assert engine.max_rows_in_step > 1, "concurrent requests never shared a decode step"
    for i, answer in enumerate(answers):
        assert 0 < len(answer.token_ids) <= 6 + 2 * i and answer.usage.completion_tokens == len(answer.token_ids)
        assert answer.finish_reason in ("STOP", "LENGTH") and answer.text


def test_the_agent_switches_from_optimum_int8_to_the_lean_graph_with_an_answer_in_flight(
    int8_artifact, lean_int4_artifact, tmp_path
):
    from tests.conftest import start_agent

    background = start_agent(int8_artifact, tmp_path)
    try:
        agent = background.agent
        gc_pauses.freeze_start_heap()  # as `hybrid edge serve` does once its agent has started
        with HybridClient(background.address, timeout_s=120) as client:
            running = client.stream(messages=chat(PROMPTS[1]), max_new_tokens=40)
            first = next(running)
            lean = background.call(agent.load(lean_int4_artifact))
            previous = background.call(agent.switch_to(lean))
            after = client.complete(messages=chat(PROMPTS[0]), max_new_tokens=8)
            rest = list(running)
            retired = threading.Thread(target=background.call, args=(agent.retire(previous, grace_s=30),))
            retired.start()
            retired.join(60)
        assert first.served_by.precision == "int8-b32" and rest[-1].served_by.precision == "int8-b32"
        assert rest[-1].finish_reason in (pb.STOP, pb.LENGTH)
        assert after.served_by.precision == "lean-int4-b32" and after.token_ids
        assert not previous.engine.running
        # The retired artifact was frozen with the start's heap; retiring it lets the collector free it.
        retired_engine = weakref.ref(previous.engine)
        del previous
        gc.collect()
        assert retired_engine() is None, "the retired artifact's engine outlived its retirement"
    finally:
        gc.unfreeze()
        background.stop()
