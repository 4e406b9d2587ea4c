"""Outlier ejection in the manner of Envoy's: a replica that fails repeatedly is left out for a while.

Each ejection lasts longer than the one before (capped), never more than a share of a tier is out at
once, and a replica that stays healthy for a while starts its back-off afresh, so that one that
recovered is not left out for ever longer each time it stumbles again.

The detector is a call hook (``hybrid.router.ledger.CallHooks``): it counts the failures and successes of
the router's calls; failed load polls count too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from hybrid.router import defaults
from hybrid.router.ledger import Call, CallHooks, Outcome
from hybrid.router.policy.replica import ReplicaState


@dataclass
class _Record:
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    # Its last failure or the end of its last ejection, whichever is later.
    last_trouble: float = float("-inf")
    # Its last failure was one of reaching it (refused, cut, silent), not an error it answered with:
    # once it answers a load poll again, it is back.
    unreachable: bool = False


class OutlierDetector(CallHooks):
    """Ejects a replica after ``max_failures`` consecutive failures, for base_s x times ejected (capped)."""

    def __init__(
        self,
        max_failures: int = defaults.OUTLIER_MAX_FAILURES,
        base_ejection_s: float = defaults.OUTLIER_BASE_EJECTION_S,
        max_ejection_s: float = defaults.OUTLIER_MAX_EJECTION_S,
        max_ejected_fraction: float = defaults.OUTLIER_MAX_EJECTED_FRACTION,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_failures = max_failures
        self.base_ejection_s = base_ejection_s
        self.max_ejection_s = max_ejection_s
        self.max_ejected_fraction = max_ejected_fraction
        self.healthy_reset_s = max(base_ejection_s, defaults.OUTLIER_HEALTHY_RESET_S)
        self._clock = clock
        self._records: dict[str, _Record] = {}
        # Set by whoever knows the fleet: a replica's tier peers (itself included), and who hears of ejections.
        self.peers: Callable[[ReplicaState], list[ReplicaState]] = lambda replica: [replica]
        self.on_ejected: Callable[[ReplicaState], None] = lambda replica: None

    def _record(self, replica: ReplicaState) -> _Record:
        return self._records.setdefault(replica.replica_id, _Record())

    def ejected(self, replica: ReplicaState) -> bool:
        return self.ejected_until(replica) > self._clock()

    def ejected_until(self, replica: ReplicaState) -> float:
        record = self._records.get(replica.replica_id)
        return record.ejected_until if record is not None else 0.0

    def consecutive_failures(self, replica: ReplicaState) -> int:
        record = self._records.get(replica.replica_id)
        return record.consecutive_failures if record is not None else 0

    def record_success(self, replica: ReplicaState) -> None:
        self._record(replica).consecutive_failures = 0

    def record_reachable(self, replica: ReplicaState) -> bool:
        """It answered a load poll (an active health check). One ejected because it could not be reached is
        back at once, as Envoy's outlier detection un-ejects on a passing health check; one ejected for the
        errors it answered with serves out its time. Returns True when this let it back."""
        record = self._records.get(replica.replica_id)
        now = self._clock()
        if record is None or not record.unreachable or record.ejected_until <= now:
            return False
        record.ejected_until, record.consecutive_failures, record.unreachable = now, 0, False
        return True

    def eject(self, replica: ReplicaState, unreachable: bool = True) -> bool:
        """Ejects it now, whatever its count (a replica found frozen); still never more than a tier's share."""
        record = self._record(replica)
        record.unreachable = unreachable
        record.consecutive_failures = self.max_failures - 1
        return self.record_failure(replica, self.peers(replica), unreachable)

    def record_failure(self, replica: ReplicaState, tier_peers: list[ReplicaState], unreachable: bool = False) -> bool:
        """Counts a failure; returns True when this one ejected the replica."""
        now = self._clock()
        record = self._record(replica)
        if now - max(record.last_trouble, record.ejected_until) >= self.healthy_reset_s:
            record.ejections = 0  # healthy long enough: the next ejection is a first one again
        record.last_trouble = now
        record.unreachable = unreachable
        record.consecutive_failures += 1
        if record.consecutive_failures < self.max_failures or record.ejected_until > now:
            return False
        ejected_peers = sum(1 for peer in tier_peers if self.ejected(peer))
        if ejected_peers + 1 > max(1, int(len(tier_peers) * self.max_ejected_fraction)):
            return False  # ejecting more would leave the tier too thin; keep sending, keep counting
        record.ejections += 1
        record.ejected_until = now + min(self.max_ejection_s, self.base_ejection_s * record.ejections)
        record.consecutive_failures = 0
        self.on_ejected(replica)
        return True

    # --- CallHooks ---
    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        if outcome.answered:
            self.record_success(call.replica)
        elif outcome.replica_failed:
            self.record_failure(call.replica, self.peers(call.replica), outcome.unreachable)
