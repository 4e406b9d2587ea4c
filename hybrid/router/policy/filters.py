"""Candidate filters: the replicas of each tier that may serve a request at all.

Each filter is a small predicate on one replica; ``candidates`` applies them tier by tier, in the
tiers' order, and says in the decision's reasons why a tier has fewer replicas or none.
"""

from __future__ import annotations

from collections.abc import Callable

from hybrid.protocol import GenerationRequest, Tier
from hybrid.router.policy.ejection import OutlierDetector
from hybrid.router.policy.replica import ReplicaState

Filter = Callable[[ReplicaState], bool]


def serves_model(request: GenerationRequest) -> Filter:
    return lambda replica: replica.record.model == (request.model or replica.record.model)


def precise_enough(request: GenerationRequest) -> Filter:
    """min_precision FULL never lands on a quantized replica."""
    return lambda replica: replica.full_precision or not request.require_full_precision


def not_ejected(outliers: OutlierDetector) -> Filter:
    return lambda replica: not outliers.ejected(replica)


def not_draining(replica: ReplicaState) -> bool:
    """A replica that said in its load report that it is draining takes no new request."""
    return not replica.draining


def not_excluded(exclude: frozenset[str]) -> Filter:
    """Replicas that already failed this request before its first token are not tried again."""
    return lambda replica: replica.replica_id not in exclude


def candidates(
    request: GenerationRequest,
    replicas: list[ReplicaState],
    order: list[Tier],
    usable: list[Filter],
    reasons: list[str] | None,
) -> dict[Tier, list[ReplicaState]]:
    """The replicas each tier (in order) may use for this request: those of its model passing every filter.

    Why a tier has fewer or none goes to ``reasons``, where there are any to write (a decision explained)."""
    of_model = serves_model(request)
    by_tier: dict[Tier, list[ReplicaState]] = {}
    for tier in order:
        name = tier.name.lower()
        members = [r for r in replicas if r.tier == tier and of_model(r)]
        if not members:
            if reasons is not None:
                reasons.append(f"{name}: no replica of this model")
            continue
        if request.require_full_precision and tier == Tier.EDGE and not any(r.full_precision for r in members):
            if reasons is not None:
                reasons.append(f"{name}: skipped, min_precision FULL and its replicas are quantized")
            continue
        kept = [r for r in members if all(passes(r) for passes in usable)]
        if len(kept) < len(members) and reasons is not None:
            reasons.append(
                f"{name}: {len(members) - len(kept)} replica(s) ejected, draining, excluded or below min_precision"
            )
        by_tier[tier] = kept
    return by_tier
