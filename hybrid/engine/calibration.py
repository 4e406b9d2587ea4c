"""The requests a replica times its decode steps with when it starts, before any real one (``measure_pace``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from hybrid import constants
from hybrid.protocol import GenerationRequest, Priority

if TYPE_CHECKING:
    from hybrid.engine.continuous import ContinuousBatchingEngine


def pace_request(index: int) -> GenerationRequest:
    """One short greedy request of the fixed prompt: the same work on every replica."""
    return GenerationRequest(
        request_id=f"pace-{index}",
        model="",
        prompt=constants.PACE_PROMPT,
        messages=None,
        max_new_tokens=constants.PACE_TOKENS,
        temperature=0.0,
        top_p=1.0,
        seed=None,
        stop=[],
        priority=Priority.BATCH,
    )


async def time_batches(engine: ContinuousBatchingEngine, full_batch: bool) -> None:
    """Runs batches of one row, of ``PACE_ROWS`` (at most the engine's batch) and, with ``full_batch``, of its
    whole batch, so its pace is measured at those sizes."""

    async def answer(index: int) -> None:
        async for _ in engine.generate(pace_request(index)):
            pass

    await answer(0)
    await asyncio.gather(*(answer(i) for i in range(1, min(engine.capacity, constants.PACE_ROWS) + 1)))
    if full_batch and engine.capacity > constants.PACE_ROWS:
        await asyncio.gather(*(answer(i) for i in range(engine.capacity)))
