"""A replica's spans of one request, written by the engine core both tiers share."""

from __future__ import annotations

import asyncio
import time

import pytest
from opentelemetry.trace import StatusCode

from hybrid.errors import DeadlineExceededError
from hybrid.telemetry import tracing
from tests.hybrid.engine.fakes import ScriptedEngine, make_request

pytestmark = pytest.mark.timeout(10)

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def answer(engine: ScriptedEngine, request) -> str:
    return "".join([chunk.text async for chunk in engine.generate(request)])


async def test_an_answer_has_its_queue_wait_prefill_and_decode_under_the_callers_span(exported):
    engine = ScriptedEngine(default_answer="abc")
    engine.start()
    try:
        request = make_request("hi", request_id="r-1")
        request.trace_carrier = {"traceparent": PARENT}
        assert await answer(engine, request) == "abc"
    finally:
        engine.stop()
    named = {span.name: span for span in exported.get_finished_spans()}
    replica = named["hybrid.stream"]
    assert replica.context.trace_id == int("0af7651916cd43dd8448eb211c80319c", 16)
    assert replica.parent.span_id == int("b7ad6b7169203331", 16)
    assert replica.attributes["hybrid.outcome"] == "ok" and replica.attributes["hybrid.completion_tokens"] == 3
    assert replica.attributes["hybrid.replica"] == "fake-replica"
    assert replica.attributes["hybrid.prompt_tokens"] == 2
    assert replica.start_time <= named["hybrid.queue_wait"].start_time
    assert named["hybrid.decode"].end_time <= replica.end_time
    assert abs(replica.end_time - time.time_ns()) < 5e9, "monotonic times land on the wall clock"


async def test_a_request_whose_deadline_passes_in_the_queue_has_no_prefill_and_an_error_span(exported):
    engine = ScriptedEngine(max_batch_size=1, default_answer="abcdefghij", step_s=0.02)
    engine.start()
    try:
        running = asyncio.ensure_future(answer(engine, make_request("first")))
        await asyncio.sleep(0.05)  # the one slot is taken for about 0.2 s
        late = make_request("second", request_id="late", deadline=time.monotonic() + 0.05)
        with pytest.raises(DeadlineExceededError):
            await answer(engine, late)
        assert await running == "abcdefghij"
    finally:
        engine.stop()
    late_spans = [s for s in exported.get_finished_spans() if s.attributes.get("hybrid.request_id") == "late"]
    [replica] = late_spans
    assert replica.attributes["hybrid.outcome"] == "deadline_exceeded"
    assert replica.status.status_code == StatusCode.ERROR
    children = [
        s.name for s in exported.get_finished_spans() if s.parent and s.parent.span_id == replica.context.span_id
    ]
    assert children == ["hybrid.queue_wait"]


async def test_no_span_is_written_while_tracing_is_off():
    assert tracing.tracer() is None
    engine = ScriptedEngine(default_answer="abc")
    engine.start()
    try:
        request = make_request("hi")
        request.trace_carrier = {"traceparent": PARENT}
        assert await answer(engine, request) == "abc"
    finally:
        engine.stop()


async def test_the_engines_own_timing_requests_leave_no_trace(exported):
    engine = ScriptedEngine(default_answer="abc")
    engine.start()
    try:
        await engine.measure_pace()
        assert await answer(engine, make_request("hi", request_id="real")) == "abc"
    finally:
        engine.stop()
    ids = {s.attributes.get("hybrid.request_id") for s in exported.get_finished_spans()} - {None}
    assert ids == {"real"}
