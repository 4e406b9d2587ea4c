"""The last stage: one replica among those expected to serve a request well enough."""

from __future__ import annotations

import random

from hybrid.protocol import Tier
from hybrid.router.policy.expectations import Outlook


def two_choices(candidates: list[Outlook], rng: random.Random) -> Outlook:
    """Power of two choices: two replicas drawn with weights by capacity, the less loaded for its size wins.

    Drawing by capacity sends a big replica its share; comparing relative load keeps a small one from
    being handed what only the big one has room for."""
    if len(candidates) == 1:
        return candidates[0]
    weights = [c.replica.capacity for c in candidates]
    first, second = rng.choices(candidates, weights=weights, k=2)
    if first is second:
        second = rng.choice([c for c in candidates if c is not first])
    return min((first, second), key=Outlook.relative_load)


def soonest_first_token(candidates: list[Outlook]) -> Outlook:
    """The replica whose first token is expected soonest; the less loaded for its size among equals."""
    return min(candidates, key=lambda c: (c.first_token_ms(), c.relative_load()))


def least_harm(candidates: list[Outlook], tier_order: list[Tier]) -> Outlook:
    """The replica where one more request puts the fewest answers in flight at risk; among equals the one of the
    earlier tier in ``tier_order``, then the less loaded for its size."""
    rank = {tier: index for index, tier in enumerate(tier_order)}
    return min(
        candidates,
        key=lambda c: (c.answers_put_at_risk(), rank.get(c.replica.tier, len(rank)), c.relative_load()),
    )


def soonest_paced_finish(candidates: list[Outlook], new_tokens: int) -> Outlook:
    """The replica expected to end an answer of ``new_tokens`` soonest at its pace; the less loaded among equals."""
    return min(candidates, key=lambda c: (c.paced_finish_ms(new_tokens), c.relative_load()))
