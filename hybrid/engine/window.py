"""Figures over a sliding window of time."""

from __future__ import annotations

import bisect
import threading
from collections import deque


class RecentWindow:
    """The values added over the last ``window_s`` seconds; every figure of an empty window is 0.

    Something that has gone quiet reports 0, not the slow figure of its last busy moment, so whoever
    steers by it tries it again instead of shunning it on old news."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._values: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()  # an engine adds on its own thread; a server reads on its loop

    def add(self, now: float, value: float) -> None:
        with self._lock:
            self._values.append((now, value))
            self._trim(now)

    def quantile(self, now: float, q: float) -> float:
        """The value that a fraction ``q`` of the window's values do not exceed (nearest rank)."""
        with self._lock:
            self._trim(now)
            values = sorted(v for _, v in self._values)
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    def _trim(self, now: float) -> None:
        while self._values and self._values[0][0] < now - self.window_s:
            self._values.popleft()


class OrderedRecentWindow(RecentWindow):
    """A ``RecentWindow`` that also keeps its values in order, for a reader that asks for a quantile far more
    often than values come (the router, at every routing decision): each quantile is then a look-up rather
    than a sort of every value of the window."""

    def __init__(self, window_s: float):
        super().__init__(window_s)
        self._sorted: list[float] = []

    def add(self, now: float, value: float) -> None:
        with self._lock:
            self._values.append((now, value))
            bisect.insort(self._sorted, value)
            self._trim(now)

    def quantile(self, now: float, q: float) -> float:
        with self._lock:
            self._trim(now)
            values = self._sorted
            return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    def _trim(self, now: float) -> None:
        while self._values and self._values[0][0] < now - self.window_s:
            _, value = self._values.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, value)]
