"""What tokens cost, priced one way wherever it is shown: the overload bench's report, the router's status page
and its usage per key.

The convention is *provisioned* cost: a replica is paid for by the hour whether it is busy or idle, so every
tier that was up costs its full price for the whole period, split over the tokens it produced; only the
completion tokens of requests that succeeded count as served (``hybrid.bench.report`` says why).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

Owner = TypeVar("Owner", bound=Hashable)

PROVISIONED = "provisioned: sum of cost_per_hour x replicas x run duration, over tokens of succeeded requests"


@dataclass(frozen=True)
class TierCost:
    """What one tier costs: replicas of it that were up during the run, and the price of one per hour."""

    replicas: int
    cost_per_hour: float

    @property
    def dollars_per_hour(self) -> float:
        return self.replicas * self.cost_per_hour


def provisioned_cost(tokens_by_tier: Mapping[str, int], duration_s: float, tiers: Mapping[str, TierCost]) -> dict:
    """Dollars of ``tiers`` over ``duration_s`` and what a million of the completion tokens served cost, per tier
    and in all. ``tokens_by_tier`` holds every served token, a tier outside ``tiers`` (unknown) included."""
    tokens = sum(tokens_by_tier.values())
    per_tier = {}
    for name, tier in tiers.items():
        served = tokens_by_tier.get(name, 0)
        dollars = provisioned_dollars(tier.cost_per_hour, duration_s, tier.replicas)
        per_tier[name] = {
            "replicas": tier.replicas,
            "cost_per_hour": tier.cost_per_hour,
            "dollars": dollars,
            "completion_tokens": served,
            "cost_per_million_tokens": dollars / served * 1e6 if served else None,
        }
    dollars = sum(t["dollars"] for t in per_tier.values())
    return {
        "convention": PROVISIONED,
        "duration_s": duration_s,
        "dollars": dollars,
        "completion_tokens": tokens,
        "cost_per_million_tokens": dollars / tokens * 1e6 if tokens else None,
        "tiers": per_tier,
    }


def provisioned_dollars(cost_per_hour: float, duration_s: float, replicas: float = 1.0) -> float:
    """What ``replicas`` replicas at ``cost_per_hour`` cost for ``duration_s`` seconds."""
    return cost_per_hour * replicas * duration_s / 3600.0


def split_by_tokens(dollars: float, tokens: Mapping[Owner, int]) -> dict[Owner, float]:
    """``dollars`` shared pro rata by each owner's tokens; nothing is split when no tokens were produced."""
    total = sum(tokens.values())
    if total <= 0:
        return {}
    return {owner: dollars * count / total for owner, count in tokens.items()}
