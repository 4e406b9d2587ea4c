"""The scheduling half of every replica's engine: continuous batching, independent of the model runtime.

One engine thread owns the model. Each iteration it takes newly ready requests from the
DynamicBatcher (REALTIME first, at most the free slots), prefills them together, hands out their first
tokens at once, adds them to the running batch, and runs one decode step for every running sequence. Finished and cancelled
sequences leave the batch at once, so new ones join it at the next step instead of waiting for the
whole batch to finish.

Subclasses supply the model: ``_prefill`` (first token of each joiner), ``_decode`` (next token of
each running row) and ``_keep`` (drop the state of rows that left). Everything a client sees —
validation, streaming, stop strings, usage and timing, deadlines, drain — is here, so the edge
agent (ONNX Runtime) and the cloud tier (PyTorch) behave the same.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from hybrid import constants
from hybrid.engine import spans
from hybrid.engine.batching import BatcherStats, DynamicBatcher, Ticket
from hybrid.engine.calibration import time_batches
from hybrid.engine.compaction import fill_from_the_end
from hybrid.engine.load import LoadSnapshot
from hybrid.engine.metrics import ReplicaMetrics
from hybrid.engine.pace import StepPace
from hybrid.engine.sampling import TokenSampler
from hybrid.engine.sequence import Sequence, deliver
from hybrid.engine.textstream import TextStream
from hybrid.engine.window import RecentWindow
from hybrid.errors import (
    DeadlineExceededError,
    HybridError,
    InvalidRequestError,
    ModelNotFoundError,
    PreconditionError,
    SlowReaderError,
    UnavailableError,
)
from hybrid.protocol import Chunk, FinishReason, GenerationRequest, ServedBy
from hybrid.telemetry import tracing

# Subclasses and their callers import Sequence from here, with the engine it belongs to.
__all__ = ["ContinuousBatchingEngine", "LoadSnapshot", "Sequence"]

log = logging.getLogger(__name__)

_SHUTTING_DOWN = "this replica is shutting down; retry on another replica"


@dataclass
class _InFlight:
    """A decode step started on the device and not yet read back: the rows it feeds, in its row order."""

    rows: list[Sequence]
    handle: object
    started_at: float


class ContinuousBatchingEngine(ABC):
    thread_name = "engine"
    # Whether ``_start_decode`` returns while the device still runs the step (a GPU's queue). The engine then
    # starts each step before its host work on the last one (emitting, detokenizing, handing chunks over), so
    # that work runs while the device computes. Off where a call blocks until done: there the overlap would only
    # hold every token back by one step.
    overlaps_steps = False

    def __init__(
        self,
        tokenizer,
        served_by: ServedBy,
        model_name: str,
        max_context_tokens: int,
        full_precision: bool,
        end_ids: set[int],
        metrics: ReplicaMetrics | None = None,
        max_batch_size: int = constants.MAX_BATCH_SIZE,
        max_wait_ms: float = constants.MAX_BATCH_WAIT_MS,
        max_queued_requests: int = constants.MAX_QUEUED_REQUESTS,
        max_unread_chunks: int = constants.MAX_UNREAD_CHUNKS,
    ):
        self.tokenizer = tokenizer
        self.served_by = served_by
        self.model_name = model_name
        self.batcher: DynamicBatcher[Sequence] = DynamicBatcher(
            max_batch_size, max_wait_ms, max_queued_requests, on_expired=self.expire
        )
        self.capacity = max_batch_size
        self.max_unread_chunks = max_unread_chunks
        self.max_context_tokens = max_context_tokens
        self.full_precision = full_precision
        self.metrics = metrics
        # Off while the engine times itself (measure_pace): those requests are no one's.
        self.traced = True
        self.end_ids = end_ids
        # The running batch, in the row order the subclass's state uses.
        self.rows: list[Sequence] = []
        self._outbox: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, object]]] = defaultdict(list)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._draining = False
        self._tokens_per_second = 0.0
        self._mean_request_ms = 0.0
        self._recent_ttft_ms = RecentWindow(constants.RECENT_TTFT_WINDOW_S)
        self._pace = StepPace()
        # Counters the tests read: how many sequences shared each decode step.
        self.decode_steps = 0
        self.max_rows_in_step = 0
        self.rows_decoded = 0
        self.decode_seconds = 0.0
        # Answers being streamed, from submission until the client has the last chunk (or went away):
        # an engine with none can be stopped without cutting anyone off.
        self.open_requests = 0
        # Failed steps (prefill or decode) and the last one's error: an edge update's probation watches them.
        self.failures = 0
        self.last_failure = ""
        self._in_flight: _InFlight | None = None
        self._prefill_ended_at = 0.0

    # --- what a model runtime supplies --------------------------------------------------------

    @abstractmethod
    def _prefill(self, joiners: list[Sequence]) -> list[int]:
        """Runs the prompts of ``joiners``, appends them to the running state, returns each first token."""

    @abstractmethod
    def _decode(self, rows: list[Sequence]) -> list[int]:
        """Feeds each row's ``next_token`` and returns the token after it, one per row."""

    def _start_decode(self, rows: list[Sequence]) -> object:
        """With ``overlaps_steps``: starts the step that feeds each row's ``next_token`` at position ``cached`` and
        returns at once, with what ``_finish_decode`` reads its tokens from. Rows that leave meanwhile are still
        computed; ``_keep`` may move the state of the others before the step is read."""
        raise NotImplementedError

    def _finish_decode(self, rows: list[Sequence], started: object) -> list[int]:
        """With ``overlaps_steps``: waits for the step ``_start_decode(rows)`` started; its token for each row."""
        raise NotImplementedError

    @abstractmethod
    def _keep(self, indices: list[int]) -> None:
        """Keeps only these rows of the running state, row ``indices[i]`` becoming row ``i``; the others have left.

        Rows that stay where they are keep their index; only the last rows move, each into a row that left
        (``fill_from_the_end``), so a runtime that keeps rows in place moves as few as rows left."""

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 0.0) -> None:
        """Refuses new work, answers queued requests with UNAVAILABLE, lets running ones finish within grace_s."""
        self._draining = True
        for ticket in self.batcher.close():
            ticket.item.send_now(UnavailableError(_SHUTTING_DOWN))
        deadline = time.monotonic() + grace_s
        while self.rows and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopping.set()
        self.batcher.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def running(self) -> bool:
        """Whether the engine thread is alive: after start and before stop, unless a bug killed it."""
        return self._thread is not None and self._thread.is_alive()

    def load(self) -> LoadSnapshot:
        return LoadSnapshot(
            queue_depth=len(self.batcher),
            active=len(self.rows),
            capacity=self.capacity,
            max_queue=self.batcher.max_queue_size,
            tokens_per_second=self._tokens_per_second,
            mean_request_ms=self._mean_request_ms,
            draining=self._draining,
            recent_ttft_p90_ms=self._recent_ttft_ms.quantile(time.monotonic(), 0.9),
            pace=self._pace.fit(),
        )

    async def measure_pace(self, full_batch: bool = False) -> None:
        """Times decode steps at one row and at ``PACE_ROWS`` (at most a full batch) before any real request, so
        that the pace this replica reports is known from its first load report; then forgets those requests in
        every other figure. ``full_batch`` times a full batch too: cheap on a GPU, whose step is far from a line
        through small batches, and what a burst meets first."""
        metrics, self.metrics = self.metrics, None
        self.traced = False

        try:
            await time_batches(self, full_batch)
        finally:
            self.metrics, self.traced = metrics, True
            self._pace.forget_stalls()
            self._recent_ttft_ms = RecentWindow(constants.RECENT_TTFT_WINDOW_S)
            self._tokens_per_second = self._mean_request_ms = 0.0
            self.decode_steps = self.max_rows_in_step = self.rows_decoded = 0
            self.decode_seconds = 0.0
            self.batcher.stats = BatcherStats()

    # --- the data plane entry ----------------------------------------------------------------

    def prepare(self, request: GenerationRequest) -> list[int]:
        """Checks what only this replica can check and returns the prompt's token ids."""
        if request.model and request.model != self.model_name:
            raise ModelNotFoundError(
                f"model {request.model!r} is not served here: this replica serves {self.model_name!r}"
            )
        if request.require_full_precision and not self.full_precision:
            raise PreconditionError(
                f"min_precision FULL was asked, but this replica runs {self.served_by.precision}: send the request "
                "through the router, or use min_precision ANY"
            )
        if request.messages is not None:
            ids = self.tokenizer.apply_chat_template(
                request.messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        else:
            ids = self.tokenizer(request.prompt).input_ids
        ids = list(ids)
        if not ids:
            raise InvalidRequestError("the prompt encodes to no tokens: give the model some text")
        if len(ids) + request.max_new_tokens > self.max_context_tokens:
            if len(ids) >= self.max_context_tokens:
                raise InvalidRequestError(
                    f"the prompt is {len(ids)} tokens; this replica's context window is {self.max_context_tokens}: shorten it"
                )
            raise InvalidRequestError(
                f"prompt ({len(ids)} tokens) + max_new_tokens ({request.max_new_tokens}) exceeds the context window "
                f"of {self.max_context_tokens} tokens: lower max_new_tokens to at most {self.max_context_tokens - len(ids)}"
            )
        return ids

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Streams the answer. Raises HybridError subclasses for anything the client must change."""
        if self._draining:
            raise UnavailableError(_SHUTTING_DOWN)
        sequence = Sequence(
            request=request,
            prompt_ids=self.prepare(request),
            sampler=TokenSampler(request.temperature, request.top_p, request.seed),
            text=TextStream(self.tokenizer, request.stop),
            loop=asyncio.get_running_loop(),
            inbox=asyncio.Queue(),
        )
        ticket = self.batcher.submit(sequence, request.priority, request.deadline)
        if self.metrics:
            self.metrics.queue_depth.set(len(self.batcher))
        finished = False
        held: HybridError | None = None
        # Read once: the spans go to the tracer that was on when the request came.
        tracer = tracing.tracer() if self.traced else None
        outcome = "cancelled"
        self.open_requests += 1
        try:
            while True:
                item = held or await sequence.inbox.get()
                if isinstance(item, HybridError):
                    outcome = item.code.name.lower()
                    raise item
                # Chunks that piled up while the consumer was busy go out as one message: under
                # load a proxy in the path (Ray Serve's) moves far fewer, larger messages.
                while not item.is_last and not sequence.inbox.empty():
                    following = sequence.inbox.get_nowait()
                    if isinstance(following, HybridError):
                        held = following
                        break
                    item = item.followed_by(following)
                yield item
                if item.is_last:
                    finished, outcome = True, "ok"
                    return
        finally:
            self.open_requests -= 1
            if not finished:
                sequence.cancelled = True
                self.batcher.cancel(ticket)
            if tracer is not None:
                spans.record(tracer, tracing.parent_of(request.trace_carrier), sequence, self.served_by, outcome)

    def expire(self, ticket: Ticket) -> None:
        """Batcher callback: a queued request outlived its deadline before compute began."""
        ticket.item.send_now(
            DeadlineExceededError(
                "the request's deadline passed while it waited in this replica's queue; allow more time or retry"
            )
        )
        if self.metrics:
            self.metrics.requests.labels("expired").inc()

    # --- the engine thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._iterate()
            except Exception as exc:  # a failed step must not leave clients hanging
                log.exception("engine step failed")
                self.failures += 1
                self.last_failure = f"{type(exc).__name__}: {exc}"
                if self.metrics:
                    self.metrics.requests.labels("error").inc(len(self.rows))
                # The batch is emptied before its clients hear of the failure: one that retries at once finds
                # the engine ready for it.
                failed, self.rows = self.rows, []
                self._in_flight = None
                self._keep([])
                for row in failed:
                    row.send_now(HybridError(f"generation failed on this replica: {exc}"))
            finally:
                self._flush()

    def _iterate(self) -> None:
        free = self.capacity - len(self.rows)
        tickets: list[Ticket] = self.batcher.next_batch(free, block=not self.rows, timeout=0.25)
        joiners = [t.item for t in tickets if not t.item.cancelled]
        for ticket in tickets:
            ticket.item.dispatched_at = ticket.dispatched_at or time.monotonic()
            if self.metrics:
                self.metrics.queue_seconds.labels(ticket.priority.name).observe(ticket.queue_time_s or 0.0)
        prefill_s = 0.0
        if joiners:
            prefill_s = self._admit(joiners)
            # The joiners' first tokens go out now, not after the decode step that follows: under load that step
            # is the largest part of a first token's wait that the engine controls.
            self._flush()
        if self.rows:
            rows, seconds = self._step()
            self._pace.observe(rows, seconds * 1000, prefill_s * 1000)
        if self.metrics:
            self.metrics.queue_depth.set(len(self.batcher))
            self.metrics.active.set(len(self.rows))

    def _admit(self, joiners: list[Sequence]) -> float:
        """Prefills ``joiners`` into the batch; returns the seconds it took."""
        started = time.monotonic()
        for seq in joiners:
            seq.prefill_started_at = started
        try:
            tokens = self._prefill(joiners)
        except Exception as exc:
            # These requests are in neither the queue nor the batch: answer them here or they would hang.
            for seq in joiners:
                seq.send_now(HybridError(f"prefill failed on this replica: {exc}"))
            raise
        ended = self._prefill_ended_at = time.monotonic()
        elapsed = ended - started
        if self.metrics:
            self.metrics.prefill_seconds.observe(elapsed)
        for seq in joiners:
            seq.cached = len(seq.prompt_ids)
            seq.prefill_ended_at = ended
        self.rows.extend(joiners)
        self._emit(joiners, tokens)
        return elapsed

    def _step(self) -> tuple[int, float]:
        """Advances the rows by one token; returns how many it advanced and the seconds the decode took."""
        if self.overlaps_steps:
            rows, tokens, elapsed = self._finish_in_flight()
        else:
            rows = list(self.rows)
            started = time.monotonic()
            tokens = self._decode(rows)
            elapsed = time.monotonic() - started
        for seq in rows:
            seq.cached += 1
        self.decode_steps += 1
        self.decode_seconds += elapsed
        self.rows_decoded += len(rows)
        self.max_rows_in_step = max(self.max_rows_in_step, len(rows))
        rate = len(rows) / max(elapsed, 1e-6)
        self._tokens_per_second = rate if not self._tokens_per_second else 0.9 * self._tokens_per_second + 0.1 * rate
        if self.metrics:
            self.metrics.step_seconds.observe(elapsed)
            self.metrics.batch_rows.observe(len(rows))
        if self.overlaps_steps:
            for seq, token in zip(rows, tokens):
                seq.next_token = token
            # Rows this step ends are fed once more, for nothing: which ones end is known only after the emit.
            self._in_flight = self._start(self.rows)
        self._emit(rows, tokens)
        return len(rows), elapsed

    def _start(self, rows: list[Sequence]) -> _InFlight:
        return _InFlight(list(rows), self._start_decode(rows), time.monotonic())

    def _finish_in_flight(self) -> tuple[list[Sequence], list[int], float]:
        """Reads the step in flight back: the rows it fed that are still running, and their tokens. Rows that
        joined since wait for the next one; when no row of the step runs any more, a step for the rows is run."""
        in_flight, self._in_flight = self._in_flight, None
        running = set(self.rows)
        if in_flight is None or running.isdisjoint(in_flight.rows):
            in_flight = self._start(self.rows)
        tokens = self._finish_decode(in_flight.rows, in_flight.handle)
        # A prefill since the start waited for this step: that wait is counted as the prefill's stall.
        elapsed = time.monotonic() - max(in_flight.started_at, self._prefill_ended_at)
        kept = [(seq, token) for seq, token in zip(in_flight.rows, tokens) if seq in running]
        return [seq for seq, _ in kept], [token for _, token in kept], elapsed

    def _post(self, seq: Sequence, item: object) -> None:
        # Chunks of one step are handed over together, one wake-up per event loop instead of one per row.
        self._outbox[seq.loop].append((seq.inbox, item))

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, defaultdict(list)
        for loop, items in outbox.items():
            deliver(loop, items)

    def _unread(self, seq: Sequence) -> bool:
        """Whether its client stopped reading: chunks piled up unread past the bound. Its row and memory then
        go to others instead of decoding for nobody (a consumer that is merely slow takes piles at once)."""
        if seq.inbox.qsize() < self.max_unread_chunks:
            return False
        seq.cancelled = True
        self._post(seq, SlowReaderError(
            f"this answer was stopped: its client read none of the last {self.max_unread_chunks} chunks; "
            "read the stream as it comes"
        ))  # fmt: skip
        if self.metrics:
            self.metrics.requests.labels("unread").inc()
        return True

    def _emit(self, sequences: list[Sequence], tokens: list[int]) -> None:
        now = time.monotonic()
        for seq, token in zip(sequences, tokens):
            if seq.cancelled or self._unread(seq):
                continue
            if seq.first_token_at is None:
                seq.first_token_at = now
                self._recent_ttft_ms.add(now, (now - seq.request.arrived_at) * 1000)
                if self.metrics:
                    self.metrics.ttft_seconds.observe(now - seq.request.arrived_at)
            seq.next_token = token
            finish = None
            if token in self.end_ids:
                finish, delta, ids = FinishReason.STOP, "", []
            else:
                seq.generated += 1
                delta, ids = seq.text.push(token), [token]
                if seq.text.stopped:
                    finish = FinishReason.STOP
                elif seq.generated >= seq.request.max_new_tokens or seq.cached + 1 >= self.max_context_tokens:
                    finish = FinishReason.LENGTH
            if finish is None:
                self._post(seq, Chunk(seq.request.request_id, delta, ids, served_by=self.served_by))
                continue
            self._finish(seq, finish, delta, ids, now)
        self._retire()

    def _finish(self, seq: Sequence, finish: FinishReason, delta: str, ids: list[int], now: float) -> None:
        """Sends the answer's last chunk, with its usage and timing, and counts the request as served."""
        seq.finish = finish
        seq.finished_at = now
        request = seq.request
        total_ms = (now - request.arrived_at) * 1000
        self._post(
            seq,
            Chunk(
                request.request_id,
                delta + seq.text.finish(),
                ids,
                served_by=self.served_by,
                finish_reason=finish,
                prompt_tokens=len(seq.prompt_ids),
                completion_tokens=seq.generated,
                queue_ms=(seq.dispatched_at - request.arrived_at) * 1000,
                time_to_first_token_ms=(seq.first_token_at - request.arrived_at) * 1000,
                total_ms=total_ms,
            ),
        )
        self._mean_request_ms = total_ms if not self._mean_request_ms else 0.9 * self._mean_request_ms + 0.1 * total_ms
        if self.metrics:
            self.metrics.requests.labels("ok").inc()
            self.metrics.tokens.inc(seq.generated)

    def _retire(self) -> None:
        live = [s.finish is None and not s.cancelled for s in self.rows]
        if all(live):
            return
        for seq in self.rows:
            if seq.cancelled and seq.finish is None and self.metrics:
                self.metrics.requests.labels("cancelled").inc()
        keep = fill_from_the_end(live)
        self.rows = [self.rows[i] for i in keep]
        self._keep(keep)
