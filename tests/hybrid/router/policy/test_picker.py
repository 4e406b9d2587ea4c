"""The last stage: power of two choices on relative load, the soonest first token, the least harm and the soonest
paced finish."""

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


def test_least_harm_puts_the_fewest_answers_at_risk_then_follows_the_tier_order(clock, ledger):
    from hybrid.engine.pace import Pace
    from hybrid.protocol import Tier
    from hybrid.router.policy.picker import least_harm
    from tests.hybrid.router.policy.fakes import begin

    private, public = replica("priv", "private", capacity=8), replica("pub", "public", capacity=8)
    for state in (private, public):
        state.pace = Pace(base_ms=10.0, per_row_ms=10.0)
    order = [Tier.PRIVATE, Tier.PUBLIC]
    outlooks = lambda: [Outlook(r, ledger, clock.now) for r in (private, public)]  # noqa: E731
    assert least_harm(outlooks(), order).replica is private  # no harm anywhere: the earlier tier
    late = begin(ledger, private, clock.now, deadline=clock.now + 1.0, max_new_tokens=60)
    assert late.tokens_left() * 30 > 500  # at 2 rows a token takes 30 ms: past half of its second
    assert least_harm(outlooks(), order).replica is public


def test_the_soonest_paced_finish_wins(clock, ledger):
    from hybrid.router.policy.picker import soonest_paced_finish

    near, far = replica("near", "private", rtt=40), replica("far", "public", rtt=80)
    send(ledger, near, 4, clock)  # its 4 rows are taken
    near.mean_request_ms = far.mean_request_ms = 4000.0  # a full replica's queue is long
    outlooks = [Outlook(r, ledger, clock.now) for r in (near, far)]
    assert soonest_paced_finish(outlooks, 10).replica is far  # near has no free slot; far starts at once
