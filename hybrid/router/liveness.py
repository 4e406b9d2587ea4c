"""Whether a replica lives: a dead one is found by its failed calls, a frozen one only by its silence.

A frozen process (stopped, or hung in a loop) refuses nothing: its connection stays up, calls to it wait,
and its load polls time out only after their own timeout. So the router listens instead: every chunk of
every call and every load report is news from the replica. A replica that has calls open and has sent
nothing for ``stall_s`` is judged frozen, a failure rather than slowness: it is ejected at once and its
calls are ended, so that those still waiting for a first token are sent elsewhere and the others end with
UNAVAILABLE instead of at their deadline. Its next load report lets it back (``OutlierDetector``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from hybrid.router import defaults
from hybrid.router.ledger import Call, CallHooks, CallLedger, Outcome
from hybrid.router.policy.ejection import OutlierDetector
from hybrid.router.policy.replica import ReplicaState

log = logging.getLogger("hybrid.router")


class LivenessWatch(CallHooks):
    """A call hook (chunks are news) and a watcher the view runs every tick."""

    def __init__(
        self,
        ledger: CallLedger,
        outliers: OutlierDetector,
        replicas: Callable[[], list[ReplicaState]],
        stall_s: float = defaults.ROUTER_STALL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ledger = ledger
        self.outliers = outliers
        self.replicas = replicas
        self.stall_s = stall_s
        self._clock = clock
        self._last_heard: dict[str, float] = {}

    def heard(self, replica: ReplicaState) -> None:
        """A load report came: it lives, and one ejected because it could not be reached is back."""
        self._last_heard[replica.replica_id] = self._clock()
        if self.outliers.record_reachable(replica):
            log.warning("%s answers again; back in rotation", replica.replica_id)

    def silent_for(self, replica_id: str, calls: list[Call], now: float) -> float:
        """How long nothing has come from it: no load report and no chunk of any call.

        A call sent is no news from the replica; for one never heard from, its oldest open call is where
        its silence starts."""
        heard = self._last_heard.get(replica_id)
        if heard is None:
            heard = min(c.began for c in calls)
        chunks = [c.last_chunk_at for c in calls if c.last_chunk_at is not None]
        return now - max([heard, *chunks])

    def check(self) -> None:
        now = self._clock()
        for replica in self.replicas():
            calls = self.ledger.in_flight(replica.replica_id)
            if not calls or self.outliers.ejected(replica):
                continue
            silent = self.silent_for(replica.replica_id, calls, now)
            if silent < self.stall_s:
                continue
            reason = f"{replica.replica_id} sent nothing for {silent:.1f} s with {len(calls)} calls open (frozen)"
            if self.outliers.eject(replica):
                log.warning("ejected %s", reason)
            for call in calls:
                call.abandon(reason)

    # --- CallHooks: chunks are news too, read off the calls themselves ---
    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        if outcome.answered:
            self._last_heard[call.replica.replica_id] = now
