"""Which affinity keys or prompt prefixes are hot: a bounded heavy-hitter sketch over a sliding window.

Space-Saving per time bucket; a key is hot when its count over the window's buckets is high. The sketch
keeps a short hash of each key, never the key itself, so that a key of megabytes costs a few bytes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from hybrid.protocol import GenerationRequest
from hybrid.router import defaults


def hotness_key(request: GenerationRequest) -> str:
    """What makes requests alike: the affinity key, else the prompt's first characters."""
    if request.affinity_key:
        return "key:" + request.affinity_key
    text = request.prompt if request.prompt is not None else "".join(m["content"] for m in request.messages or [])
    return "prefix:" + text[: defaults.HOTNESS_PREFIX_CHARS]


def digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=defaults.HOTNESS_DIGEST_BYTES).digest()


class HotnessTracker:
    def __init__(
        self,
        window_s: float = defaults.HOTNESS_WINDOW_S,
        buckets: int = defaults.HOTNESS_BUCKETS,
        capacity: int = defaults.HOTNESS_CAPACITY,
        hot_count: int = defaults.HOT_COUNT,
        clock: Callable[[], float] = time.monotonic,
    ):
        if buckets < 1 or capacity < 1 or window_s <= 0:
            raise ValueError("window_s, buckets and capacity must be positive")
        self.bucket_s = window_s / buckets
        self.buckets = buckets
        self.capacity = capacity
        self.hot_count = hot_count
        self._clock = clock
        # bucket index -> {key digest: [count, overestimate]}; each bucket holds at most `capacity` keys.
        self._counts: dict[int, dict[bytes, list[int]]] = {}

    def _bucket(self) -> int:
        return int(self._clock() // self.bucket_s)

    def _expire(self, current: int) -> None:
        for index in [i for i in self._counts if i <= current - self.buckets]:
            del self._counts[index]

    def record(self, key: str) -> None:
        if not key:
            return
        hashed = digest(key)
        current = self._bucket()
        self._expire(current)
        counts = self._counts.setdefault(current, {})
        if hashed in counts:
            counts[hashed][0] += 1
        elif len(counts) < self.capacity:
            counts[hashed] = [1, 0]
        else:
            # Space-Saving: the new key takes the place of the least counted one and inherits its count,
            # remembered as an overestimate so that it cannot make a one-off key look hot.
            smallest = min(counts, key=lambda k: counts[k][0])
            inherited = counts.pop(smallest)[0]
            counts[hashed] = [inherited + 1, inherited]

    def count(self, key: str) -> int:
        """A lower bound of the key's requests in the window."""
        hashed = digest(key)
        self._expire(self._bucket())
        return sum(bucket[hashed][0] - bucket[hashed][1] for bucket in self._counts.values() if hashed in bucket)

    def is_hot(self, key: str) -> bool:
        return bool(key) and self.count(key) >= self.hot_count

    def tracked_keys(self) -> int:
        return sum(len(bucket) for bucket in self._counts.values())
