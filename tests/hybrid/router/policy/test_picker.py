"""The last stage: power of two choices on relative load, and the soonest first token."""

from __future__ import annotations

import random
from collections import Counter

from hybrid.router.policy.expectations import Outlook
from hybrid.router.policy.picker import soonest_first_token, two_choices
from tests.hybrid.router.policy.fakes import replica, send


def test_two_choices_prefers_the_least_loaded_and_respects_capacity(clock, ledger):
    rng = random.Random(1)
    busy, idle = replica("busy", "private", capacity=8), replica("idle", "private", capacity=8)
    send(ledger, busy, 6, clock)
    outlooks = [Outlook(r, ledger, clock.now) for r in (busy, idle)]
    assert Counter(two_choices(outlooks, rng).replica.replica_id for _ in range(50)) == {"idle": 50}
    # With equal relative load, the bigger replica gets more of the traffic.
    small, big = replica("small", "private", capacity=2), replica("big", "private", capacity=16)
    outlooks = [Outlook(r, ledger, clock.now) for r in (small, big)]
    picks = Counter(two_choices(outlooks, rng).replica.replica_id for _ in range(400))
    assert picks["big"] > picks["small"]


def test_the_soonest_first_token_wins_and_relative_load_breaks_ties(clock, ledger):
    near, far = replica("near", "edge", rtt=5), replica("far", "public", rtt=80)
    assert soonest_first_token([Outlook(far, ledger, clock.now), Outlook(near, ledger, clock.now)]).replica is near
    near.recent_ttft_p90_ms = 300.0
    assert soonest_first_token([Outlook(far, ledger, clock.now), Outlook(near, ledger, clock.now)]).replica is far
    one, other = replica("one", "private", rtt=40), replica("other", "private", rtt=40)
    send(ledger, one, 2, clock)
    assert soonest_first_token([Outlook(one, ledger, clock.now), Outlook(other, ledger, clock.now)]).replica is other
