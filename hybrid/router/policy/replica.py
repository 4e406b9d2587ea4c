"""What the router knows of one replica: discovery's record and what the replica last reported of itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from hybrid.discovery import ReplicaRecord
from hybrid.engine.pace import Pace
from hybrid.protocol import Tier
from hybrid.router import defaults

# Precisions that count as full for min_precision FULL.
FULL_PRECISIONS = frozenset({"fp32", "fp16", "bf16"})
# Read several times in every routing decision: a dictionary look-up, not a parse.
_TIER_OF_NAME = {tier.name.lower(): tier for tier in Tier}


@dataclass
class ReplicaState:
    """A replica as discovery lists it, plus its last load report and the round trip to it.

    The router's own calls to it live in ``hybrid.router.ledger``, its failures in ``ejection``."""

    record: ReplicaRecord
    # Last reported by the replica (GetLoad).
    queue_depth: int = 0
    active: int = 0
    mean_request_ms: float = 0.0
    recent_ttft_p90_ms: float = 0.0
    draining: bool = False
    # How its time between tokens grows with its batch, as it reported.
    pace: Pace = field(default_factory=Pace)
    # Round-trip time, exponentially weighted: what a request sent now would meet, queues on the way included.
    rtt_ms: float | None = None
    # How far the replica is: the round trip without the queues on the way (see observe_rtt).
    floor_rtt_ms: float | None = None
    # The least time between two tokens at one row it ever reported (0 until known). Its pace's base carries
    # the recent wait for newcomers' prefill, which a burst inflates; what it did idle is a floor.
    fastest_token_ms: float = 0.0

    @property
    def replica_id(self) -> str:
        return self.record.id

    @property
    def tier(self) -> Tier:
        tier = _TIER_OF_NAME.get(self.record.tier)
        return tier if tier is not None else Tier.parse(self.record.tier)

    @property
    def capacity(self) -> int:
        """Sequences it decodes at once; at least 1, whatever discovery says."""
        return max(1, self.record.capacity)

    @property
    def full_precision(self) -> bool:
        return self.record.precision in FULL_PRECISIONS

    def observe_pace(self, pace: Pace) -> None:
        self.pace = pace
        if pace.known:
            one_row = pace.token_ms(1)
            self.fastest_token_ms = one_row if not self.fastest_token_ms else min(self.fastest_token_ms, one_row)

    @property
    def distance_ms(self) -> float | None:
        """The round trip that says how near the replica is, for REALTIME's nearest tier."""
        return self.floor_rtt_ms if self.floor_rtt_ms is not None else self.rtt_ms

    def observe_rtt(self, rtt_ms: float, alpha: float = 0.2) -> None:
        self.rtt_ms = rtt_ms if self.rtt_ms is None else (1 - alpha) * self.rtt_ms + alpha * rtt_ms
        # The floor falls to a faster poll at once and rises toward slower ones by a small share of the gap: a
        # spell of slow polls (a busy replica, a busy host) leaves it where it was, a route that really got
        # longer is followed within minutes.
        floor = self.floor_rtt_ms
        rise = defaults.ROUTING_DISTANCE_RISE
        self.floor_rtt_ms = rtt_ms if floor is None or rtt_ms <= floor else floor + rise * (rtt_ms - floor)
