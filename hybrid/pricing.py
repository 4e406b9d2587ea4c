"""What tokens cost: a replica is paid for by the hour, busy or idle, and its dollars are split over the tokens
it produced (provisioned cost). The overload bench's report and the router's usage per key price alike."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

Owner = TypeVar("Owner", bound=Hashable)


def provisioned_dollars(cost_per_hour: float, duration_s: float, replicas: float = 1.0) -> float:
    """What ``replicas`` replicas at ``cost_per_hour`` cost for ``duration_s`` seconds."""
    return cost_per_hour * replicas * duration_s / 3600.0


def split_by_tokens(dollars: float, tokens: Mapping[Owner, int]) -> dict[Owner, float]:
    """``dollars`` shared pro rata by each owner's tokens; nothing is split when no tokens were produced."""
    total = sum(tokens.values())
    if total <= 0:
        return {}
    return {owner: dollars * count / total for owner, count in tokens.items()}
