"""The cloud engine on its own (no Ray): the real model, fp32 on this CPU, against transformers."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest
import torch

from cloud.model import StaticCacheLlama, batch_buckets
from edge_agent.artifacts.quality import evaluation_text
from hybrid.client import build_request
from hybrid.errors import InvalidRequestError, ModelNotFoundError
from hybrid.protocol import request_from_proto
from tests.conftest import PROMPTS


def chat(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def run(engine, **params) -> list:
    async def collect():
        return [chunk async for chunk in engine.generate(request_from_proto(build_request(**params)))]

    return asyncio.run(collect())


def tokens(chunks) -> list[int]:
    return [t for c in chunks for t in c.token_ids]


def test_batch_buckets_cover_every_size_up_to_the_maximum():
    assert batch_buckets(32) == [1, 2, 4, 8, 16, 32]
    assert batch_buckets(48) == [1, 2, 4, 8, 16, 32, 48]
    assert batch_buckets(1) == [1]


def test_greedy_stream_matches_pytorch(cloud_engine, torch_greedy):
    for prompt in PROMPTS:
        chunks = run(cloud_engine, messages=chat(prompt), max_new_tokens=16)
        assert tokens(chunks) == torch_greedy(prompt, 16), prompt
        assert len(chunks) > 1, "the answer must arrive as a stream of chunks"
        last = chunks[-1]
        assert last.completion_tokens == len(tokens(chunks))
        assert last.served_by.precision == "fp32" and last.served_by.region == "test-cloud-region"


def test_concurrent_requests_share_decode_steps_and_match_solo_answers(cloud_engine, torch_greedy):
    cloud_engine.max_rows_in_step = 0
    # Different lengths, so sequences leave the running batch at different steps and the cache is compacted.
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        futures = [
            pool.submit(run, cloud_engine, messages=chat(p), max_new_tokens=6 + 3 * i) for i, p in enumerate(PROMPTS)
        ]
        answers = [tokens(f.result()) for f in futures]
    for i, prompt in enumerate(PROMPTS):
        assert answers[i] == torch_greedy(prompt, 6 + 3 * i), prompt
    assert cloud_engine.max_rows_in_step > 1, "concurrent requests never shared a decode step"


def test_a_late_request_joins_the_running_batch(cloud_engine, torch_greedy):
    async def scenario():
        long = cloud_engine.generate(request_from_proto(build_request(messages=chat(PROMPTS[1]), max_new_tokens=40)))
        first = await long.__anext__()
        steps_before = cloud_engine.decode_steps
        short = [
            c
            async for c in cloud_engine.generate(
                request_from_proto(build_request(messages=chat(PROMPTS[0]), max_new_tokens=5))
            )
        ]
        steps_for_short = cloud_engine.decode_steps - steps_before
        rest = [c async for c in long]
        return [first, *rest], short, steps_for_short

    long, short, steps_for_short = asyncio.run(scenario())
    assert tokens(short) == torch_greedy(PROMPTS[0], 5)
    assert tokens(long) == torch_greedy(PROMPTS[1], 40)
    assert steps_for_short < 10, "the short request waited for the long one instead of joining its batch"


def test_sampling_is_reproducible_with_a_seed(cloud_engine):
    params = dict(messages=chat("Tell me a story."), max_new_tokens=10, temperature=0.9, top_p=0.9, seed=7)
    first, second = tokens(run(cloud_engine, **params)), tokens(run(cloud_engine, **params))
    other = tokens(run(cloud_engine, **{**params, "seed": 8}))
    assert first == second
    assert first != other


def test_requests_the_engine_cannot_take_are_refused_with_what_to_change(cloud_engine):
    with pytest.raises(InvalidRequestError, match="lower max_new_tokens"):
        run(cloud_engine, prompt="hello " * 200, max_new_tokens=4000)
    with pytest.raises(ModelNotFoundError, match="is not served here"):
        run(cloud_engine, prompt="hi", model="llama-70b")
    assert tokens(run(cloud_engine, prompt="hi", max_new_tokens=2, full_precision=True)), "fp32 is full precision"


def test_prefill_past_the_initial_cache_length_matches_transformers(torch_model, tokenizer):
    """A prompt longer than the first cache allocation grows the cache and keeps the logits exact."""
    ids = tokenizer(evaluation_text()).input_ids[:300]
    model = StaticCacheLlama(torch_model, max_batch=2, max_context=512)
    ours = model.prefill([ids[:7], ids], first_slot=0)
    with torch.inference_mode():
        reference = torch_model(torch.tensor([ids])).logits[0, -1]
        short_reference = torch_model(torch.tensor([ids[:7]])).logits[0, -1]
    torch.testing.assert_close(ours[1], reference, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(ours[0], short_reference, atol=2e-3, rtol=1e-3)
    # The next decode step of the long row continues from the cache written by the prefill.
    # Slot 0 holds the short prompt, slot 1 the long one.
    step = model.decode([int(short_reference.argmax()), int(reference.argmax())], [7, 300])
    with torch.inference_mode():
        following = torch_model(torch.tensor([[*ids, int(reference.argmax())]])).logits[0, -1]
    torch.testing.assert_close(step.logits[1], following, atol=2e-3, rtol=1e-3)


def test_the_prefill_warm_up_runs_each_shape_under_its_cap_and_changes_no_answer(torch_model, tokenizer):
    ids = tokenizer(evaluation_text()).input_ids[:40]
    model = StaticCacheLlama(torch_model, max_batch=4, max_context=256)
    shapes = model.warm_prefill(max_tokens=256)
    assert shapes == [
        (rows, length) for rows in (1, 2, 4) for length in (16, 32, 64, 128, 256) if rows * length <= 256
    ]
    # The warm-up filled every slot with its own rows; a prompt prefilled after it, and its next decode step,
    # see none of them.
    logits = model.prefill([ids[:9], ids], first_slot=0)
    step = model.decode([int(logits[0].argmax()), int(logits[1].argmax())], [9, 40])
    with torch.inference_mode():
        reference = torch_model(torch.tensor([ids])).logits[0, -1]
        following = torch_model(torch.tensor([[*ids, int(reference.argmax())]])).logits[0, -1]
    torch.testing.assert_close(logits[1], reference, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(step.logits[1], following, atol=2e-3, rtol=1e-3)
    assert model.warm_prefill(max_tokens=0) == []


@pytest.fixture(scope="module")
def overlapping_engine(resolved_model):
    """The engine starting each decode step before its host work on the last, as on a GPU. On this CPU a step
    has finished when its start returns, which is the one difference; rows still leave and join between a
    step's start and its read."""
    from cloud.config import ReplicaSettings
    from cloud.engine import build_engine

    engine = build_engine(ReplicaSettings(device="cpu", max_batch_size=8), replica_id="test-overlap")
    engine.overlaps_steps = True
    engine.start()
    yield engine
    engine.stop()


def test_overlapped_steps_give_the_answers_of_steps_one_at_a_time(overlapping_engine, cloud_engine, torch_greedy):
    # Different lengths and a late joiner: rows leave and join while a step is in flight.
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS) + 1) as pool:
        futures = [
            pool.submit(run, overlapping_engine, messages=chat(p), max_new_tokens=6 + 3 * i)
            for i, p in enumerate(PROMPTS)
        ]
        sampled = dict(messages=chat("Tell me a story."), max_new_tokens=12, temperature=0.9, top_p=0.9, seed=7)
        late = pool.submit(run, overlapping_engine, **sampled)
        answers = [tokens(f.result()) for f in futures]
    for i, prompt in enumerate(PROMPTS):
        assert answers[i] == torch_greedy(prompt, 6 + 3 * i), prompt
    assert tokens(late.result()) == tokens(run(cloud_engine, **sampled)), "a sampled row came out otherwise"
    assert overlapping_engine.max_rows_in_step > 1
