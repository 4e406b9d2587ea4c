"""How long a replica takes between two tokens of one answer, as a function of its batch size."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Pace:
    """Time between two tokens of one sequence ≈ ``base_ms + per_row_ms × rows`` in the batch; 0, 0 when unknown."""

    base_ms: float = 0.0
    per_row_ms: float = 0.0

    @property
    def known(self) -> bool:
        return self.base_ms > 0 or self.per_row_ms > 0

    def token_ms(self, rows: int) -> float:
        return self.base_ms + self.per_row_ms * rows


class StepPace:
    """Decode steps timed by how many rows they advanced and fitted to a line, plus the prefill stall.

    Each batch size keeps its own moving average of its decode step, so a busy minute at one size does not
    erase what the others take, and the line through them says what a size never seen would take. The rows
    running also wait while newcomers are prefilled; that wait, averaged over recent iterations (those
    without newcomers count 0), rises with the arrival rate and is added to the line's base."""

    def __init__(self, step_alpha: float = 0.2, stall_alpha: float = 0.05):
        self.step_alpha = step_alpha
        self.stall_alpha = stall_alpha
        self._step_ms_by_rows: dict[int, float] = {}
        self._stall_ms = 0.0
        self._lock = threading.Lock()  # an engine observes on its own thread; a server reads on its loop

    def observe(self, rows: int, step_ms: float, prefill_ms: float) -> None:
        """One engine iteration: a decode step of ``rows`` rows after ``prefill_ms`` of prefill (0 for none)."""
        with self._lock:
            previous = self._step_ms_by_rows.get(rows)
            self._step_ms_by_rows[rows] = (
                step_ms if previous is None else (1 - self.step_alpha) * previous + self.step_alpha * step_ms
            )
            self._stall_ms = (1 - self.stall_alpha) * self._stall_ms + self.stall_alpha * prefill_ms

    def forget_stalls(self) -> None:
        """Drops the prefill stall measured so far (a start-up calibration's is no guide to real traffic)."""
        with self._lock:
            self._stall_ms = 0.0

    def fit(self) -> Pace:
        """Least squares over the batch sizes seen, slope and intercept kept non-negative; unknown until two sizes."""
        with self._lock:
            points = list(self._step_ms_by_rows.items())
            stall = self._stall_ms
        if len(points) < 2:
            return Pace()
        n = len(points)
        mean_rows = sum(r for r, _ in points) / n
        mean_ms = sum(m for _, m in points) / n
        spread = sum((r - mean_rows) ** 2 for r, _ in points)
        slope = max(0.0, sum((r - mean_rows) * (m - mean_ms) for r, m in points) / spread)
        base = mean_ms - slope * mean_rows
        if base < 0:  # steeper than proportional: keep the line through the origin and the mean instead
            base, slope = 0.0, mean_ms / mean_rows
        return Pace(base + stall, slope)
