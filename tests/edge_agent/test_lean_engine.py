"""Continuous batching on the lean runtime: the engine core over the tiny Llama's lean graph, each answer
checked token for token against PyTorch's greedy answer to the same prompt. Fast: no export, no agent."""

from __future__ import annotations

import asyncio

import pytest

from edge_agent.artifacts.lean_graph import LeanWeights
from edge_agent.lean_engine import LeanGenerationEngine
from edge_agent.lean_runtime import LeanDecoder
from hybrid.protocol import GenerationRequest
from tests.edge_agent.tiny_llama import make_tiny_llama
from tests.hybrid.engine.fakes import END, QUANTIZED, CharTokenizer, make_request

PROMPTS = ["the sea", "a longer prompt about mountains and rivers", "hi", "why is the sky blue?", "ok"]


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_llama(seed=1)


@pytest.fixture
def engine(tiny, tmp_path):
    graph = tiny.lean_model(tmp_path, LeanWeights(projection_bits=None, head_bits=None), "fp32")
    runtime = LeanDecoder(graph, providers=["CPUExecutionProvider"], max_slots=3, max_context=256, prefill_chunk=8)
    engine = LeanGenerationEngine(
        runtime,
        CharTokenizer(),
        served_by=QUANTIZED,
        model_name="tiny",
        max_context_tokens=256,
        full_precision=False,
        end_ids={END},
        max_batch_size=3,
        max_wait_ms=5.0,
    )
    engine.start()
    yield engine
    engine.stop()


def request(prompt: str, max_new_tokens: int) -> GenerationRequest:
    return make_request(prompt, max_new_tokens=max_new_tokens)


async def token_ids(engine: LeanGenerationEngine, prompt: str, max_new_tokens: int) -> list[int]:
    return [t for chunk in [c async for c in engine.generate(request(prompt, max_new_tokens))] for t in chunk.token_ids]


def reference(tiny, engine, prompt: str, max_new_tokens: int) -> list[int]:
    answer = tiny.greedy(engine.prepare(request(prompt, max_new_tokens)), max_new_tokens, end_id=END)
    return answer[: answer.index(END)] if END in answer else answer


async def test_rows_join_and_leave_a_running_batch_and_each_answer_is_the_greedy_one(tiny, engine):
    lengths = [12, 30, 5, 20, 9]
    # Five answers over three slots: later ones wait for a slot, take the one a finished answer freed, and
    # join a batch whose other rows are mid-answer.
    answers = await asyncio.gather(*(token_ids(engine, p, n) for p, n in zip(PROMPTS, lengths)))
    for prompt, length, answer in zip(PROMPTS, lengths, answers):
        assert answer == reference(tiny, engine, prompt, length), prompt
    assert engine.max_rows_in_step == 3, "the rows never shared a decode step"


async def test_a_late_request_joins_between_two_steps_of_a_long_answer(tiny, engine):
    long_answer = engine.generate(request(PROMPTS[1], 40))
    first = await long_answer.__anext__()
    steps_before = engine.decode_steps
    short = await token_ids(engine, PROMPTS[0], 4)
    rest = [c async for c in long_answer]
    assert short == reference(tiny, engine, PROMPTS[0], 4)
    assert [*first.token_ids, *(t for c in rest for t in c.token_ids)] == reference(tiny, engine, PROMPTS[1], 40)
    assert engine.decode_steps - steps_before < 40
