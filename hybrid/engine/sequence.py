"""One request inside a continuous-batching engine, and the hand-over of its chunks to the client's event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hybrid.engine.sampling import TokenSampler
from hybrid.engine.textstream import TextStream
from hybrid.protocol import FinishReason, GenerationRequest


@dataclass(eq=False)
class Sequence:
    """One request inside the engine."""

    request: GenerationRequest
    prompt_ids: list[int]
    sampler: TokenSampler
    text: TextStream
    loop: asyncio.AbstractEventLoop
    inbox: asyncio.Queue
    generated: int = 0
    # Tokens of this row that are in the KV cache (prompt, then each fed-back token).
    cached: int = 0
    next_token: int = 0
    dispatched_at: float = 0.0
    first_token_at: float | None = None
    # The prefill this request's first token came from, and when its last token came: its spans' bounds.
    prefill_started_at: float | None = None
    prefill_ended_at: float | None = None
    finished_at: float | None = None
    finish: FinishReason | None = None
    cancelled: bool = False

    def send_now(self, item: object) -> None:
        """Hands one chunk or error to the waiting client from any thread."""
        deliver(self.loop, [(self.inbox, item)])


def deliver(loop: asyncio.AbstractEventLoop, items: list[tuple[asyncio.Queue, object]]) -> None:
    """Puts each item into its inbox on ``loop``, from any thread, with one wake-up of that loop."""

    def put_all() -> None:
        for inbox, item in items:
            inbox.put_nowait(item)

    try:
        loop.call_soon_threadsafe(put_all)
    except RuntimeError:  # the event loop is gone; the client cannot be answered anyway
        pass
