"""An answer's chunks streamed at most once every ``interval_s`` after the first: tokens made in between go out
together as one message.

Every message costs the replica's one interpreter a round of gRPC's (or Ray Serve's) send path, and the router
one relay; at a full batch a replica makes a token for each of its rows every few milliseconds. The first chunk
goes out at once, so the time to the first token is untouched, and the last one too, with the answer's usage.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from hybrid.protocol import Chunk


async def coalesced(chunks: AsyncIterator[Chunk], interval_s: float) -> AsyncIterator[Chunk]:
    pending, sent_at = None, None
    async for chunk in chunks:
        pending = chunk if pending is None else pending.followed_by(chunk)
        now = time.monotonic()
        if sent_at is None or pending.is_last or now - sent_at >= interval_s:
            yield pending
            pending, sent_at = None, now
