"""Chunks of one answer streamed at most once an interval after the first: the same text in fewer messages."""

from __future__ import annotations

import asyncio

import pytest

from cloud import coalesce
from hybrid.protocol import Chunk, FinishReason


async def produced(arrivals: list[float], clock: list[float]):
    """A chunk of one token at each arrival time (seconds), the last one final; ``clock[0]`` is the time."""
    for index, at in enumerate(arrivals):
        clock[0] = at
        final = FinishReason.STOP if index == len(arrivals) - 1 else None
        yield Chunk("r", f"t{index} ", [index], finish_reason=final, completion_tokens=index + 1)


def sent(arrivals: list[float], interval_s: float, monkeypatch) -> list[Chunk]:
    clock = [0.0]
    monkeypatch.setattr(coalesce.time, "monotonic", lambda: clock[0])

    async def collect() -> list[Chunk]:
        return [chunk async for chunk in coalesce.coalesced(produced(arrivals, clock), interval_s)]

    return asyncio.run(collect())


def test_tokens_within_the_interval_go_out_together_and_the_first_and_last_at_once(monkeypatch):
    arrivals = [0.000, 0.003, 0.006, 0.009, 0.012, 0.021, 0.024, 0.030]  # a token every 3 ms, then the end
    messages = sent(arrivals, 0.010, monkeypatch)
    assert [m.token_ids for m in messages] == [[0], [1, 2, 3, 4], [5, 6], [7]]
    assert "".join(m.text for m in messages) == "".join(f"t{i} " for i in range(len(arrivals)))
    assert messages[-1].is_last and messages[-1].completion_tokens == len(arrivals), "usage rides on the last one"


@pytest.mark.parametrize("interval_s", [0.0, 0.002])
def test_tokens_slower_than_the_interval_go_out_one_by_one(monkeypatch, interval_s):
    arrivals = [0.0, 0.003, 0.006, 0.009]
    assert [m.token_ids for m in sent(arrivals, interval_s, monkeypatch)] == [[0], [1], [2], [3]]
