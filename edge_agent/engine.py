"""Continuous batching over OnnxCausalLM.

One engine thread owns the model. Each iteration it takes newly ready requests from the
DynamicBatcher (REALTIME first, at most the free slots), prefills them together, merges them into
the running batch, and runs one decode step for every running sequence. Finished and cancelled
sequences leave the batch at once, so new ones join it at the next step instead of waiting for the
whole batch to finish.

The running batch keeps one KV cache, left-padded to a common length with an attention mask;
each row carries its own position ids.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from edge_agent.runtime import KVCache, OnnxCausalLM
from hybrid import constants
from hybrid.batching import DynamicBatcher, Ticket
from hybrid.errors import (
    DeadlineExceededError,
    HybridError,
    InvalidRequestError,
    ModelNotFoundError,
    PreconditionError,
    UnavailableError,
)
from hybrid.metrics import ReplicaMetrics
from hybrid.protocol import Chunk, FinishReason, GenerationRequest, ServedBy
from hybrid.sampling import TokenSampler, pick_tokens
from hybrid.textstream import TextStream

log = logging.getLogger(__name__)

Sink = Callable[[object], None]


@dataclass(eq=False)
class _Sequence:
    request: GenerationRequest
    prompt_ids: list[int]
    sampler: TokenSampler
    text: TextStream
    sink: Sink
    generated: int = 0
    # Tokens of this row that are in the KV cache (prompt, then each fed-back token).
    cached: int = 0
    next_token: int = 0
    dispatched_at: float = 0.0
    first_token_at: float | None = None
    finish: FinishReason | None = None
    cancelled: bool = False


@dataclass
class LoadSnapshot:
    queue_depth: int
    active: int
    capacity: int
    max_queue: int
    tokens_per_second: float
    mean_request_ms: float
    draining: bool


@dataclass
class _Batch:
    """The running batch: rows in order, their KV cache and attention mask."""

    rows: list[_Sequence] = field(default_factory=list)
    cache: KVCache | None = None
    mask: np.ndarray | None = None


class GenerationEngine:
    def __init__(
        self,
        runtime: OnnxCausalLM,
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
    ):
        self.runtime = runtime
        self.tokenizer = tokenizer
        self.served_by = served_by
        self.model_name = model_name
        self.batcher: DynamicBatcher[_Sequence] = DynamicBatcher(
            max_batch_size, max_wait_ms, max_queued_requests, on_expired=self.expire
        )
        self.capacity = max_batch_size
        self.max_context_tokens = max_context_tokens
        self.full_precision = full_precision
        self.metrics = metrics
        self.end_ids = end_ids
        self._batch = _Batch()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._draining = False
        self._tokens_per_second = 0.0
        self._mean_request_ms = 0.0
        # Counters the tests read: how many sequences shared each decode step.
        self.decode_steps = 0
        self.max_rows_in_step = 0
        self.rows_decoded = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edge-engine", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 0.0) -> None:
        """Refuses new work, answers queued requests with UNAVAILABLE, lets running ones finish within grace_s."""
        self._draining = True
        for ticket in self.batcher.close():
            ticket.item.sink(UnavailableError("this replica is shutting down; retry on another replica"))
        deadline = time.monotonic() + grace_s
        while self._batch.rows and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopping.set()
        self.batcher.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def load(self) -> LoadSnapshot:
        return LoadSnapshot(
            queue_depth=len(self.batcher),
            active=len(self._batch.rows),
            capacity=self.capacity,
            max_queue=self.batcher.max_queue_size,
            tokens_per_second=self._tokens_per_second,
            mean_request_ms=self._mean_request_ms,
            draining=self._draining,
        )

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
            ids = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=True)
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
            raise UnavailableError("this replica is shutting down; retry on another replica")
        prompt_ids = self.prepare(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def sink(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone; the client cannot be answered anyway
                pass

        sequence = _Sequence(
            request=request,
            prompt_ids=prompt_ids,
            sampler=TokenSampler(request.temperature, request.top_p, request.seed),
            text=TextStream(self.tokenizer, request.stop),
            sink=sink,
        )
        ticket = self.batcher.submit(sequence, request.priority, request.deadline)
        if self.metrics:
            self.metrics.queue_depth.set(len(self.batcher))
        finished = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, HybridError):
                    raise item
                yield item
                if item.is_last:
                    finished = True
                    return
        finally:
            if not finished:
                sequence.cancelled = True
                self.batcher.cancel(ticket)

    # --- the engine thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._iterate()
            except Exception as exc:  # a failed step must not leave clients hanging
                log.exception("engine step failed")
                for row in self._batch.rows:
                    row.sink(HybridError(f"generation failed on this replica: {exc}"))
                self._batch = _Batch()

    def _iterate(self) -> None:
        batch = self._batch
        free = self.capacity - len(batch.rows)
        tickets: list[Ticket] = self.batcher.next_batch(free, block=not batch.rows, timeout=0.25)
        joiners = [t.item for t in tickets if not t.item.cancelled]
        for ticket in tickets:
            ticket.item.dispatched_at = ticket.dispatched_at or time.monotonic()
            if self.metrics:
                self.metrics.queue_seconds.labels(ticket.priority.name).observe(ticket.queue_time_s or 0.0)
        if joiners:
            self._prefill(joiners)
        if self._batch.rows:
            self._decode()
        if self.metrics:
            self.metrics.queue_depth.set(len(self.batcher))
            self.metrics.active.set(len(self._batch.rows))

    def _prefill(self, joiners: list[_Sequence]) -> None:
        longest = max(len(s.prompt_ids) for s in joiners)
        ids = np.zeros((len(joiners), longest), np.int64)
        mask = np.zeros((len(joiners), longest), np.int64)
        for row, seq in enumerate(joiners):
            n = len(seq.prompt_ids)
            ids[row, longest - n :] = seq.prompt_ids
            mask[row, longest - n :] = 1
        positions = np.maximum(mask.cumsum(-1) - 1, 0)
        started = time.monotonic()
        try:
            logits, cache = self.runtime.forward(ids, mask, positions, self.runtime.empty_cache(len(joiners)))
        except Exception as exc:
            # These requests are in neither the queue nor the batch: answer them here or they would hang.
            for seq in joiners:
                seq.sink(HybridError(f"prefill failed on this replica: {exc}"))
            raise
        if self.metrics:
            self.metrics.prefill_seconds.observe(time.monotonic() - started)
        for seq in joiners:
            seq.cached = len(seq.prompt_ids)
        self._merge(joiners, cache, mask)
        self._emit(joiners, pick_tokens([s.sampler for s in joiners], logits))

    def _decode(self) -> None:
        batch = self._batch
        assert batch.cache is not None and batch.mask is not None
        rows = len(batch.rows)
        ids = np.array([[s.next_token] for s in batch.rows], np.int64)
        positions = np.array([[s.cached] for s in batch.rows], np.int64)
        batch.mask = np.concatenate([batch.mask, np.ones((rows, 1), np.int64)], axis=1)
        started = time.monotonic()
        logits, batch.cache = self.runtime.forward(ids, batch.mask, positions, batch.cache)
        elapsed = time.monotonic() - started
        for seq in batch.rows:
            seq.cached += 1
        self.decode_steps += 1
        self.rows_decoded += rows
        self.max_rows_in_step = max(self.max_rows_in_step, rows)
        rate = rows / max(elapsed, 1e-6)
        self._tokens_per_second = rate if not self._tokens_per_second else 0.9 * self._tokens_per_second + 0.1 * rate
        if self.metrics:
            self.metrics.step_seconds.observe(elapsed)
            self.metrics.batch_rows.observe(rows)
        self._emit(list(batch.rows), pick_tokens([s.sampler for s in batch.rows], logits))

    def _emit(self, sequences: list[_Sequence], tokens: list[int]) -> None:
        now = time.monotonic()
        for seq, token in zip(sequences, tokens):
            if seq.cancelled:
                continue
            if seq.first_token_at is None:
                seq.first_token_at = now
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
                seq.sink(Chunk(seq.request.request_id, delta, ids, served_by=self.served_by))
                continue
            seq.finish = finish
            request = seq.request
            total_ms = (now - request.arrived_at) * 1000
            seq.sink(
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
                )
            )
            self._mean_request_ms = (
                total_ms if not self._mean_request_ms else 0.9 * self._mean_request_ms + 0.1 * total_ms
            )
            if self.metrics:
                self.metrics.requests.labels("ok").inc()
                self.metrics.tokens.inc(seq.generated)
        self._retire()

    # --- batch bookkeeping -------------------------------------------------------------------

    def _merge(self, joiners: list[_Sequence], cache: KVCache, mask: np.ndarray) -> None:
        batch = self._batch
        if not batch.rows:
            self._batch = _Batch(rows=list(joiners), cache=cache, mask=mask)
            return
        assert batch.cache is not None and batch.mask is not None
        length = max(batch.cache.length, cache.length)
        old = batch.cache.to_numpy()
        new = cache.to_numpy()
        merged = [
            np.concatenate([_left_pad(a, length, axis=2), _left_pad(b, length, axis=2)]) for a, b in zip(old, new)
        ]
        merged_mask = np.concatenate([_left_pad(batch.mask, length, axis=1), _left_pad(mask, length, axis=1)])
        self._batch = _Batch(rows=batch.rows + joiners, cache=self.runtime.cache_from_numpy(merged), mask=merged_mask)

    def _retire(self) -> None:
        batch = self._batch
        keep = [i for i, s in enumerate(batch.rows) if s.finish is None and not s.cancelled]
        if len(keep) == len(batch.rows):
            return
        for seq in batch.rows:
            if seq.cancelled and seq.finish is None and self.metrics:
                self.metrics.requests.labels("cancelled").inc()
        if not keep:
            self._batch = _Batch()
            return
        assert batch.cache is not None and batch.mask is not None
        mask = batch.mask[keep]
        # Columns that are padding in every remaining row are dropped.
        first = int(np.argmax(mask.any(axis=0)))
        arrays = [a[keep][:, :, first:, :] for a in batch.cache.to_numpy()]
        self._batch = _Batch(
            rows=[batch.rows[i] for i in keep], cache=self.runtime.cache_from_numpy(arrays), mask=mask[:, first:]
        )

    def expire(self, ticket: Ticket) -> None:
        """Batcher callback: a queued request outlived its deadline before compute began."""
        ticket.item.sink(
            DeadlineExceededError(
                "the request's deadline passed while it waited in this replica's queue; allow more time or retry"
            )
        )
        if self.metrics:
            self.metrics.requests.labels("expired").inc()


def _left_pad(array: np.ndarray, length: int, axis: int) -> np.ndarray:
    missing = length - array.shape[axis]
    if missing == 0:
        return array
    widths = [(0, 0)] * array.ndim
    widths[axis] = (missing, 0)
    return np.pad(array, widths)
