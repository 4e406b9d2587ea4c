"""The continuous-batching engine core over a scripted fake model: scheduling, streaming, limits and failures."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest

from hybrid.engine.metrics import ReplicaMetrics
from hybrid.errors import HybridError
from hybrid.protocol import FinishReason, Priority
from tests.hybrid.engine.fakes import ScriptedEngine, make_request


@pytest.fixture
def make_engine():
    engines: list[ScriptedEngine] = []

    def make(**settings) -> ScriptedEngine:
        engine = ScriptedEngine(**settings)
        engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()


async def answer(engine: ScriptedEngine, request) -> list:
    return [chunk async for chunk in engine.generate(request)]


async def failure_of(engine: ScriptedEngine, request) -> HybridError:
    with pytest.raises(HybridError) as failure:
        await answer(engine, request)
    return failure.value


async def until(condition, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the engine never got there"
        await asyncio.sleep(0.005)


async def rest_of(stream) -> list:
    return [chunk async for chunk in stream]


async def abandon(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def text_of(chunks) -> str:
    return "".join(c.text for c in chunks)


async def test_a_late_request_joins_the_running_batch_at_the_next_step(make_engine):
    engine = make_engine(scripts={"long": "x" * 60, "short": "hi"}, step_s=0.005)
    long_answer = engine.generate(make_request("long"))
    await long_answer.__anext__()  # the long answer is being decoded
    short = await answer(engine, make_request("short"))
    assert text_of(short) == "hi" and short[-1].finish_reason == FinishReason.STOP
    assert engine.load().active == 1, "the short answer had to wait for the long one to finish"
    assert engine.prefilled() == [["long"], ["short"]]
    assert engine.decoded_together("long", "short")
    rest = await rest_of(long_answer)
    assert rest[-1].completion_tokens == 60 and engine.max_rows_in_step == 2


async def test_realtime_skips_the_batch_wait(make_engine):
    engine = make_engine(scripts={"now": "ok"}, max_wait_ms=5_000)
    waiting = asyncio.create_task(answer(engine, make_request("later", max_new_tokens=2)))
    await asyncio.sleep(0.05)
    assert engine.prefilled() == [], "an interactive request alone waits out the batch window"
    started = time.monotonic()
    urgent = await answer(engine, make_request("now", priority=Priority.REALTIME))
    assert time.monotonic() - started < 2.5 and text_of(urgent) == "ok"
    # The realtime request made the batch ready at once, and took its place first.
    assert engine.prefilled() == [["now", "later"]]
    await waiting


async def test_a_joiners_first_token_goes_out_before_the_decode_step_that_follows_its_prefill(make_engine):
    engine = make_engine(scripts={"long": "x" * 40, "now": "ok"}, max_wait_ms=0)
    running = engine.generate(make_request("long"))
    await running.__anext__()
    engine.pause_after_next_prefill()
    joiner = engine.generate(make_request("now", priority=Priority.REALTIME))
    first = await asyncio.wait_for(joiner.__anext__(), timeout=2)
    assert first.text == "o", "the first token waited for the next decode step"
    assert engine.prefilled() == [["long"], ["now"]]
    engine.resume()
    assert text_of([first, *await rest_of(joiner)]) == "ok"
    await rest_of(running)


async def test_realtime_jumps_the_queue(make_engine):
    engine = make_engine(max_batch_size=1)
    running = engine.generate(make_request("running", max_new_tokens=5))
    await running.__anext__()
    engine.pause()
    queued = [
        asyncio.create_task(answer(engine, make_request(prompt, max_new_tokens=3, priority=priority)))
        for prompt, priority in (
            ("batch", Priority.BATCH),
            ("interactive", Priority.INTERACTIVE),
            ("realtime", Priority.REALTIME),
        )
    ]
    await until(lambda: engine.load().queue_depth == 3)
    engine.resume()
    await asyncio.gather(*queued, rest_of(running))
    assert engine.prefilled() == [["running"], ["realtime"], ["interactive"], ["batch"]]


async def test_a_stop_string_ends_the_answer_with_usage_and_timing(make_engine):
    engine = make_engine(scripts={"question": "The answer is 42. Then more text follows."})
    chunks = await answer(engine, make_request("question", stop=[". Then"]))
    last = chunks[-1]
    assert text_of(chunks) == "The answer is 42"
    assert last.finish_reason == FinishReason.STOP and all(c.finish_reason is None for c in chunks[:-1])
    assert last.prompt_tokens == len("question")
    assert last.completion_tokens == len("The answer is 42. Then")
    assert 0 <= last.queue_ms <= last.time_to_first_token_ms <= last.total_ms
    assert last.served_by == engine.served_by


async def test_the_end_token_ends_the_answer_with_stop(make_engine):
    engine = make_engine(scripts={"greet": "hello!"})
    chunks = await answer(engine, make_request("greet", max_new_tokens=50))
    assert text_of(chunks) == "hello!" and chunks[-1].finish_reason == FinishReason.STOP
    assert chunks[-1].completion_tokens == 6
    assert sum(len(c.token_ids) for c in chunks) == 6, "the end token is not part of the answer"


async def test_max_new_tokens_ends_the_answer_with_length(make_engine):
    engine = make_engine(scripts={"count": "abcdefghijklmnop"})
    chunks = await answer(engine, make_request("count", max_new_tokens=5))
    assert text_of(chunks) == "abcde"
    assert chunks[-1].finish_reason == FinishReason.LENGTH and chunks[-1].completion_tokens == 5


async def test_chat_messages_go_through_the_chat_template(make_engine):
    engine = make_engine(scripts={"hi there": "hey"})
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    chunks = await answer(engine, make_request(prompt=None, request_id="chat", messages=messages))
    assert text_of(chunks) == "hey"
    assert chunks[-1].prompt_tokens == len("<system>be brief<user>hi there<assistant>")


async def test_a_prompt_too_long_for_the_context_window_says_what_to_change(make_engine):
    engine = make_engine(max_context_tokens=64)
    too_many = await failure_of(engine, make_request("0123456789", max_new_tokens=60))
    assert too_many.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt (10 tokens) + max_new_tokens (60)" in too_many.message
    assert "lower max_new_tokens to at most 54" in too_many.message
    too_long = await failure_of(engine, make_request("z" * 64, max_new_tokens=1))
    assert "the prompt is 64 tokens" in too_long.message and "shorten it" in too_long.message
    empty = await failure_of(engine, make_request(""))
    assert "no tokens" in empty.message
    assert engine.calls == [], "a refused request must not reach the model"
    fits = await answer(engine, make_request("0123456789", max_new_tokens=54))
    assert fits[-1].completion_tokens == 54


async def test_a_caller_that_goes_away_leaves_the_batch_and_frees_its_row(make_engine):
    metrics = ReplicaMetrics()
    engine = make_engine(metrics=metrics, step_s=0.003)
    stream = engine.generate(make_request("abandoned"))
    await stream.__anext__()
    await stream.__anext__()
    assert engine.load().active == 1
    await stream.aclose()
    await until(lambda: engine.load().active == 0)
    assert engine.state == [] and engine.open_requests == 0
    assert metrics.registry.get_sample_value("hybrid_replica_requests_total", {"outcome": "cancelled"}) == 1
    decodes = len(engine.calls)
    await asyncio.sleep(0.02)
    assert len(engine.calls) == decodes, "the engine kept decoding for a caller that had gone"
    assert text_of(await answer(engine, make_request("next", max_new_tokens=3))) == "lor"


async def test_a_caller_that_goes_away_while_queued_never_reaches_the_model(make_engine):
    engine = make_engine(max_batch_size=1)
    running = asyncio.create_task(answer(engine, make_request("running", max_new_tokens=5)))
    await until(lambda: engine.load().active == 1)
    engine.pause()
    queued = asyncio.create_task(answer(engine, make_request("impatient")))
    await until(lambda: engine.load().queue_depth == 1)
    await abandon(queued)
    assert engine.load().queue_depth == 0
    engine.resume()
    await running
    await asyncio.sleep(0.02)
    assert engine.prefilled() == [["running"]] and engine.batcher.stats.cancelled == 1


async def test_a_queued_request_past_its_deadline_fails_before_compute(make_engine):
    metrics = ReplicaMetrics()
    engine = make_engine(metrics=metrics, max_batch_size=3, max_wait_ms=5_000, step_s=0.003)
    running = asyncio.create_task(answer(engine, make_request("running", priority=Priority.REALTIME)))
    await until(lambda: engine.load().active == 1)
    late = await failure_of(engine, make_request("late", deadline=time.monotonic() + 0.05))
    assert late.code == grpc.StatusCode.DEADLINE_EXCEEDED and "allow more time" in late.message
    assert all("late" not in ids for _, ids in engine.calls), "an expired request reached the model"
    assert metrics.registry.get_sample_value("hybrid_replica_requests_total", {"outcome": "expired"}) == 1
    await abandon(running)


async def test_stop_refuses_the_queue_and_lets_running_answers_finish(make_engine):
    engine = make_engine(max_batch_size=1, scripts={"running": "r" * 20})
    running = asyncio.create_task(answer(engine, make_request("running")))
    await until(lambda: engine.load().active == 1)
    engine.pause()
    queued = asyncio.create_task(answer(engine, make_request("queued")))
    await until(lambda: engine.load().queue_depth == 1)
    stopping = asyncio.create_task(asyncio.to_thread(engine.stop, 5.0))
    with pytest.raises(HybridError) as refused:
        await queued
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE and "retry on another replica" in refused.value.message
    after = await failure_of(engine, make_request("after"))
    assert after.code == grpc.StatusCode.UNAVAILABLE and engine.load().draining
    assert not stopping.done(), "stop must wait for the running answer"
    engine.resume()
    await stopping
    finished = await running
    assert text_of(finished) == "r" * 20 and finished[-1].finish_reason == FinishReason.STOP
    assert not engine.running


async def test_stop_without_grace_does_not_wait_for_running_answers(make_engine):
    engine = make_engine(step_s=0.01)
    running = asyncio.create_task(answer(engine, make_request("running")))
    await until(lambda: engine.load().active == 1)
    started = time.monotonic()
    await asyncio.to_thread(engine.stop, 0.0)
    assert time.monotonic() - started < 1.0 and not engine.running
    await abandon(running)


async def test_a_failing_step_answers_every_running_row_and_the_engine_serves_on(make_engine):
    metrics = ReplicaMetrics()
    engine = make_engine(metrics=metrics, fail_on_rows=2, max_wait_ms=50)
    results = await asyncio.gather(
        answer(engine, make_request("first")), answer(engine, make_request("second")), return_exceptions=True
    )
    assert engine.prefilled() == [["first", "second"]]
    for failure in results:
        assert isinstance(failure, HybridError) and failure.code == grpc.StatusCode.INTERNAL
        assert "generation failed on this replica: the fake model broke" in failure.message
    assert engine.failures == 1 and engine.last_failure == "RuntimeError: the fake model broke"
    assert engine.state == [] and engine.load().active == 0
    assert metrics.registry.get_sample_value("hybrid_replica_requests_total", {"outcome": "error"}) == 2
    assert engine.running
    assert text_of(await answer(engine, make_request("third", max_new_tokens=5))) == "lorem"


async def test_a_failing_prefill_answers_its_joiners_and_the_running_rows(make_engine):
    # Long enough (about 1.2 s) to be still running when the joiner comes, even on a busy machine.
    engine = make_engine(scripts={"running": "r" * 400}, step_s=0.003, max_context_tokens=1024)
    running = asyncio.create_task(answer(engine, make_request("running", max_new_tokens=400)))
    await until(lambda: engine.load().active == 1)
    engine.fail_prefill = True
    joiner = await failure_of(engine, make_request("joiner"))
    assert "prefill failed on this replica: the fake model broke" in joiner.message
    # The step failed as a whole: the rows already running are answered too, and nothing is left behind.
    with pytest.raises(HybridError, match="generation failed on this replica"):
        await running
    assert engine.state == [] and engine.failures == 1
    assert text_of(await answer(engine, make_request("after", max_new_tokens=2))) == "lo"


async def test_measured_pace_stays_and_its_requests_leave_no_other_trace(make_engine):
    metrics = ReplicaMetrics()
    engine = make_engine(metrics=metrics, max_batch_size=8, step_s=0.001, per_row_s=0.004)
    await engine.measure_pace()
    load = engine.load()
    assert load.pace.known and load.pace.token_ms(8) > load.pace.token_ms(1) + 10
    assert load.tokens_per_second == 0 and load.mean_request_ms == 0 and load.recent_ttft_p90_ms == 0
    assert engine.decode_steps == 0 and engine.rows_decoded == 0 and engine.batcher.stats.submitted == 0
    assert metrics.registry.get_sample_value("hybrid_replica_requests_total", {"outcome": "ok"}) is None
    assert max(len(ids) for ids in engine.prefilled()) > 1, "the pace must be timed at more than one row"
    await answer(engine, make_request("real", max_new_tokens=4))
    assert metrics.registry.get_sample_value("hybrid_replica_requests_total", {"outcome": "ok"}) == 1
    assert engine.load().tokens_per_second > 0 and engine.load().pace.known


async def test_a_full_batch_is_timed_only_when_asked(make_engine):
    small = make_engine(max_batch_size=16, step_s=0.001, per_row_s=0.001)
    await small.measure_pace()
    assert max(len(ids) for ids in small.prefilled()) < 16
    full = make_engine(max_batch_size=16, step_s=0.001, per_row_s=0.001)
    await full.measure_pace(full_batch=True)
    assert max(len(ids) for ids in full.prefilled()) == 16, "the pace must be timed at a full batch"
    assert full.decode_steps == 0 and full.batcher.stats.submitted == 0


async def test_a_model_not_served_here_is_not_found(make_engine):
    engine = make_engine()
    failure = await failure_of(engine, make_request(model="other-model"))
    assert failure.code == grpc.StatusCode.NOT_FOUND
    assert "'other-model'" in failure.message and "'fake-model'" in failure.message
    assert await answer(engine, make_request(model="fake-model", max_new_tokens=1))


async def test_full_precision_asked_of_a_quantized_engine_is_a_failed_precondition(make_engine):
    quantized = make_engine()
    failure = await failure_of(quantized, make_request(require_full_precision=True))
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "int8-b32" in failure.message and "min_precision ANY" in failure.message
    full = make_engine(full_precision=True)
    assert await answer(full, make_request(require_full_precision=True, max_new_tokens=1))


async def test_the_load_report_carries_the_engine_figures(make_engine):
    engine = make_engine(max_batch_size=8, max_queued_requests=20, per_row_s=0.003)
    await engine.measure_pace()
    running = asyncio.create_task(answer(engine, make_request("running")))
    await until(lambda: engine.load().active == 1)
    report = engine.load().to_proto("fake-replica", "fake-model", "int8-b32")
    assert (report.replica_id, report.model, report.precision) == ("fake-replica", "fake-model", "int8-b32")
    assert (report.active, report.capacity, report.max_queue, report.queue_depth) == (1, 8, 20, 0)
    assert report.token_ms_per_row == pytest.approx(engine.load().pace.per_row_ms) and report.token_ms_per_row > 0
    assert not report.draining
    await abandon(running)


async def test_a_client_that_stops_reading_is_stopped_once_its_unread_chunks_pass_the_bound(make_engine):
    engine = make_engine(max_unread_chunks=8, default_answer="x" * 200)
    stream = engine.generate(make_request("never read", max_new_tokens=200))
    first = await stream.__anext__()  # it reads one chunk, then nothing more
    assert first.text.startswith("x")
    await until(lambda: not engine.rows)  # its row is freed long before its 200 tokens
    assert engine.rows_decoded < 40
    with pytest.raises(HybridError) as stopped:
        await rest_of(stream)
    assert stopped.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "read the stream as it comes" in stopped.value.message
    served = await answer(engine, make_request("a reader", max_new_tokens=5))
    assert served[-1].finish_reason is not None, "the engine serves on"


async def test_a_slow_reader_gets_its_chunks_in_piles_and_is_not_stopped(make_engine):
    engine = make_engine(max_unread_chunks=64, default_answer="y" * 60)
    chunks = []
    async for chunk in engine.generate(make_request("slow", max_new_tokens=60)):
        chunks.append(chunk)
        await asyncio.sleep(0.01)  # several engine steps per read, but reading
    assert "".join(c.text for c in chunks) == "y" * 60 and chunks[-1].finish_reason is not None
    assert len(chunks) < 60, "what piled up between two reads came as one chunk"
