"""Request classes and the routing table: the order in which each class tries the tiers."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from hybrid.protocol import GenerationRequest, Priority, Tier
from hybrid.router import defaults
from hybrid.router.policy.replica import ReplicaState


class RequestClass(str, Enum):
    REALTIME = "REALTIME"
    HOT = "hot"
    COLD_INTERACTIVE = "cold INTERACTIVE"
    BATCH = "BATCH"


# The nearest tier first for REALTIME is measured, not named: this order only breaks ties.
NEAREST_FIRST = [Tier.EDGE, Tier.PRIVATE, Tier.PUBLIC]

TIER_TABLE: dict[RequestClass, list[Tier]] = {
    # Hot keys and prefixes are served where they are cheapest and closest: the edge.
    RequestClass.HOT: [Tier.EDGE, Tier.PRIVATE, Tier.PUBLIC],
    RequestClass.COLD_INTERACTIVE: [Tier.PRIVATE, Tier.PUBLIC, Tier.EDGE],
    # BATCH never goes to the edge: its slots are kept for requests that someone waits on.
    RequestClass.BATCH: [Tier.PUBLIC, Tier.PRIVATE],
}


def classify(request: GenerationRequest, hot: bool) -> RequestClass:
    """The request's class; ``hot`` says whether its key or prompt prefix is hot now."""
    if request.priority == Priority.REALTIME:
        return RequestClass.REALTIME
    if hot:
        return RequestClass.HOT
    if request.priority == Priority.BATCH:
        return RequestClass.BATCH
    return RequestClass.COLD_INTERACTIVE


def tier_order(request_class: RequestClass, replicas: Iterable[ReplicaState]) -> list[Tier]:
    if request_class != RequestClass.REALTIME:
        return list(TIER_TABLE[request_class])
    # Nearest first, by the least distance among each tier's replicas; unmeasured tiers last. Tiers within
    # ROUTING_NEAREST_BAND_MS of the nearest one not yet placed are equally near, and keep the table's order.
    best: dict[Tier, float] = {}
    for replica in replicas:
        rtt = replica.distance_ms if replica.distance_ms is not None else float("inf")
        best[replica.tier] = min(best.get(replica.tier, float("inf")), rtt)
    left = sorted(NEAREST_FIRST, key=lambda tier: (best.get(tier, float("inf")), NEAREST_FIRST.index(tier)))
    order: list[Tier] = []
    while left:
        nearest = best.get(left[0], float("inf"))
        band = [t for t in left if best.get(t, float("inf")) <= nearest + defaults.ROUTING_NEAREST_BAND_MS]
        order += sorted(band, key=NEAREST_FIRST.index)
        left = [t for t in left if t not in band]
    return order
