"""The dynamic batcher every replica uses in front of its engine.

A plain, thread-safe object with no I/O, so it is tested without sockets:

* at most ``max_batch_size`` requests are handed out at once and a request waits at most
  ``max_wait_ms`` for others to join it;
* the queue is ordered by priority, then arrival; a REALTIME request makes the batch ready at
  once instead of waiting out the window;
* the queue is bounded: past ``max_queue_size`` a submit raises OverloadedError with a retry hint
  instead of letting the queue grow without end;
* requests whose deadline has passed are dropped before they reach compute, and a cancelled
  request frees its place.

Every ticket records when it was queued and when it was handed out, so queue times are measured
by the batcher itself.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Generic, TypeVar

from hybrid import constants
from hybrid.errors import OverloadedError
from hybrid.protocol import Priority

T = TypeVar("T")


class TicketState(IntEnum):
    QUEUED = 0
    DISPATCHED = 1
    CANCELLED = 2
    EXPIRED = 3


@dataclass(eq=False)
class Ticket(Generic[T]):
    """One queued request. ``item`` is whatever the engine needs to run it."""

    item: T
    priority: Priority
    # Absolute time on the batcher's clock after which the answer is useless; None for no deadline.
    deadline: float | None
    enqueued_at: float
    sequence: int
    dispatched_at: float | None = None
    state: TicketState = TicketState.QUEUED
    # Set when the ticket leaves the queue for any reason.
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def queue_time_s(self) -> float | None:
        """Seconds between submit and dispatch; None until dispatched."""
        if self.dispatched_at is None:
            return None
        return self.dispatched_at - self.enqueued_at

    def _sort_key(self) -> tuple[int, int]:
        return (int(self.priority), self.sequence)


@dataclass
class BatcherStats:
    submitted: int = 0
    dispatched: int = 0
    rejected: int = 0
    expired: int = 0
    cancelled: int = 0


class DynamicBatcher(Generic[T]):
    def __init__(
        self,
        max_batch_size: int = constants.MAX_BATCH_SIZE,
        max_wait_ms: float = constants.MAX_BATCH_WAIT_MS,
        max_queue_size: int = constants.MAX_QUEUED_REQUESTS,
        clock: Callable[[], float] = time.monotonic,
        on_expired: Callable[[Ticket[T]], None] | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {max_wait_ms}")
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1, got {max_queue_size}")
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue_size = max_queue_size
        self._clock = clock
        self._on_expired = on_expired
        self._heap: list[tuple[tuple[int, int], Ticket[T]]] = []
        self._live = 0  # queued tickets not yet cancelled (cancelled ones are removed lazily)
        self._realtime_waiting = 0
        self._sequence = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        # Recent requests handed out per second, for the retry hint.
        self._dispatch_rate = 0.0
        self._last_dispatch: float | None = None
        self.stats = BatcherStats()

    # --- producers ---------------------------------------------------------------------------

    def submit(self, item: T, priority: Priority = Priority.INTERACTIVE, deadline: float | None = None) -> Ticket[T]:
        """Queues ``item``. Raises OverloadedError when the queue is full."""
        with self._cond:
            if self._closed:
                raise OverloadedError("this replica is shutting down and takes no new requests", self.retry_after_ms())
            if self._live >= self.max_queue_size:
                self.stats.rejected += 1
                raise OverloadedError(
                    f"queue full ({self._live} waiting, limit {self.max_queue_size})", self.retry_after_ms()
                )
            ticket = Ticket(
                item=item,
                priority=Priority(priority),
                deadline=deadline,
                enqueued_at=self._clock(),
                sequence=next(self._sequence),
            )
            heapq.heappush(self._heap, (ticket._sort_key(), ticket))
            self._live += 1
            self.stats.submitted += 1
            if ticket.priority == Priority.REALTIME:
                self._realtime_waiting += 1
            self._cond.notify_all()
            return ticket

    def cancel(self, ticket: Ticket[T]) -> bool:
        """Removes a queued ticket. Returns False if it had already left the queue."""
        with self._cond:
            if ticket.state != TicketState.QUEUED:
                return False
            self._leave(ticket, TicketState.CANCELLED)
            self.stats.cancelled += 1
            self._cond.notify_all()
            return True

    # --- the engine --------------------------------------------------------------------------

    def next_batch(
        self, free_slots: int | None = None, block: bool = True, timeout: float | None = None
    ) -> list[Ticket[T]]:
        """Hands out the next batch, best priority first.

        A batch is ready when a REALTIME request waits, when enough requests wait to fill
        ``free_slots``, or when the oldest has waited ``max_wait_ms``. With ``block`` the call
        waits for that (at most ``timeout`` seconds); without it, it returns [] when not ready.
        """
        limit = self.max_batch_size if free_slots is None else min(free_slots, self.max_batch_size)
        if limit <= 0:
            return []
        give_up = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                self._drop_expired()
                wait = self._time_until_ready(limit)
                if wait <= 0:
                    return self._take(limit)
                if not block or self._closed:
                    return []
                if give_up is not None:
                    remaining = give_up - self._clock()
                    if remaining <= 0:
                        return []
                    wait = min(wait, remaining)
                self._cond.wait(None if wait == float("inf") else wait)

    def close(self) -> list[Ticket[T]]:
        """Stops taking requests and returns those still queued, so the caller can answer them."""
        with self._cond:
            self._closed = True
            left = [t for _, t in self._heap if t.state == TicketState.QUEUED]
            for ticket in left:
                self._leave(ticket, TicketState.CANCELLED)
            self._heap.clear()
            self._cond.notify_all()
            return left

    def wake(self) -> None:
        """Wakes a blocked next_batch, e.g. when slots free up."""
        with self._cond:
            self._cond.notify_all()

    # --- load ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._cond:
            return self._live

    def retry_after_ms(self) -> int:
        """How long a rejected client should wait: the time to drain the queue at the recent rate."""
        if self._dispatch_rate <= 0:
            return max(constants.MIN_RETRY_AFTER_MS, int(self.max_wait_s * 1000 * 2))
        return max(constants.MIN_RETRY_AFTER_MS, int(1000 * self._live / self._dispatch_rate))

    # --- internals (hold self._cond) ----------------------------------------------------------

    def _time_until_ready(self, limit: int) -> float:
        self._prune_head()
        if not self._heap:
            return float("inf")
        if self._realtime_waiting or self._live >= limit:
            return 0.0
        oldest = min(t.enqueued_at for _, t in self._heap if t.state == TicketState.QUEUED)
        return oldest + self.max_wait_s - self._clock()

    def _take(self, limit: int) -> list[Ticket[T]]:
        now = self._clock()
        batch: list[Ticket[T]] = []
        while self._heap and len(batch) < limit:
            _, ticket = heapq.heappop(self._heap)
            if ticket.state != TicketState.QUEUED:
                continue
            ticket.dispatched_at = now
            self._leave(ticket, TicketState.DISPATCHED)
            batch.append(ticket)
        self.stats.dispatched += len(batch)
        self._record_dispatch(now, len(batch))
        return batch

    def _record_dispatch(self, now: float, count: int) -> None:
        if self._last_dispatch is not None and count:
            interval = max(now - self._last_dispatch, 1e-3)
            rate = count / interval
            self._dispatch_rate = rate if self._dispatch_rate == 0 else 0.8 * self._dispatch_rate + 0.2 * rate
        self._last_dispatch = now

    def _drop_expired(self) -> None:
        now = self._clock()
        expired = [
            t for _, t in self._heap if t.state == TicketState.QUEUED and t.deadline is not None and t.deadline <= now
        ]
        for ticket in expired:
            self._leave(ticket, TicketState.EXPIRED)
            self.stats.expired += 1
            if self._on_expired is not None:
                self._on_expired(ticket)

    def _leave(self, ticket: Ticket[T], state: TicketState) -> None:
        ticket.state = state
        self._live -= 1
        if ticket.priority == Priority.REALTIME:
            self._realtime_waiting -= 1
        ticket._done.set()

    def _prune_head(self) -> None:
        while self._heap and self._heap[0][1].state != TicketState.QUEUED:
            heapq.heappop(self._heap)
