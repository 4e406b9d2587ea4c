"""The engine starting each decode step before its host work on the last one, over a scripted fake device."""

from __future__ import annotations

import asyncio

import pytest

from hybrid.protocol import FinishReason
from tests.hybrid.engine.fakes import OverlappingEngine, make_request


@pytest.fixture
def engine():
    engine = OverlappingEngine(
        scripts={"long": "a" * 40, "mid": "b" * 17, "short": "cc", "late": "d" * 9}, step_s=0.002, max_batch_size=4
    )
    engine.start()
    yield engine
    engine.stop()


async def answer(engine: OverlappingEngine, prompt: str) -> list:
    return [chunk async for chunk in engine.generate(make_request(prompt))]


def text_of(chunks) -> str:
    return "".join(c.text for c in chunks)


async def test_answers_stay_whole_while_rows_leave_and_join_a_step_in_flight(engine):
    first = asyncio.gather(*(answer(engine, p) for p in ("long", "mid", "short")))
    await asyncio.sleep(0.02)
    late = await answer(engine, "late")
    long, mid, short = await first
    for chunks, prompt in ((long, "long"), (mid, "mid"), (short, "short"), (late, "late")):
        assert text_of(chunks) == engine.scripts[prompt], prompt
        assert chunks[-1].finish_reason == FinishReason.STOP
        assert chunks[-1].completion_tokens == len(engine.scripts[prompt])
    assert engine.decoded_together("long", "late"), "the late request never joined the running batch"
    assert engine.load().active == 0


async def test_each_step_starts_before_the_host_works_on_the_last(engine):
    await answer(engine, "long")
    order = engine.order()
    emits_after_a_step = [i for i, kind in enumerate(order) if kind == "emit" and order[i - 1] != "prefill"]
    assert len(emits_after_a_step) >= 39
    # The step was read back, the next one started, and only then did the read step's tokens go out.
    for i in emits_after_a_step:
        assert order[i - 2 : i] == ["finish", "start"], order[i - 3 : i + 1]


async def test_a_step_started_for_rows_that_all_left_is_replaced_not_read(engine):
    await answer(engine, "short")
    # The short answer's last step was started for nobody. Reading it for the next request would advance no
    # row; the engine starts a step for the rows it has instead.
    steps, rows = engine.decode_steps, engine.rows_decoded
    late = await answer(engine, "late")
    assert text_of(late) == engine.scripts["late"]
    assert engine.decode_steps - steps == engine.rows_decoded - rows, "a decode step advanced no row"
