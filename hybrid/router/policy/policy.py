"""The routing policy: the stages composed into one decision, with its reasons.

``choose`` classifies the request and orders the tiers (``tiers``), keeps each tier's usable replicas
(``filters``), judges what each would do for it (``expectations``) and picks one (``picker``), in up to
three passes, each less demanding than the one before:

1. REALTIME only: a replica expected to give the first token within ``ROUTING_TTFT_HEADROOM`` of
   ``realtime_ttft_ms`` and to meet what pass 2 asks;
2. one expected to finish (``max_new_tokens`` at the pace it would have with this request in its batch,
   or at what a token took in the router's calls lately if slower) within ``ROUTING_DEADLINE_HEADROOM`` of
   the deadline, without leaving any answer the router has in flight there expected to end past that share
   of its own deadline. A REALTIME request, which no tier could give its first token in time, takes the
   soonest expected first token of any such replica instead of the nearest tier's;
3. one where the queue's wait and every token at the predicted pace fit in the deadline itself, even if
   answers in flight there slow down (recent first tokens are left out: after a burst they lag for seconds).
   Tier order no longer leads here: of every tier's replicas that fit, a REALTIME request takes the one
   expected to end soonest, any other the one where it puts the fewest answers in flight at risk (then the
   earlier tier). Under a burst the first-choice tier fills with work that could wait, while another tier
   has room: this keeps it from slowing every REALTIME answer there past its deadline.

Only where no replica passes even the last is the request refused at once: one sent where it is expected to
end late would only hold a batch row until its deadline ends it. The refusal is DEADLINE_EXCEEDED where no
replica could end the answer in time even with its batch to itself (retrying cannot help: the deadline or
``max_new_tokens`` must change), else RESOURCE_EXHAUSTED with a hint of when to try again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hybrid import constants
from hybrid.protocol import GenerationRequest, Tier
from hybrid.router import defaults
from hybrid.router.ledger import CallLedger
from hybrid.router.policy import expectations, filters, picker, tiers
from hybrid.router.policy.ejection import OutlierDetector
from hybrid.router.policy.expectations import Expectation, Outlook
from hybrid.router.policy.hotness import HotnessTracker, hotness_key
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.policy.tiers import RequestClass


@dataclass
class Decision:
    request_class: RequestClass
    tier_order: list[Tier]
    chosen: ReplicaState | None
    reasons: list[str] = field(default_factory=list)
    # With no replica chosen: when trying again may succeed.
    retry_after_ms: int = 0
    # With no replica chosen because no replica could end the answer in time even idle: the soonest one could.
    impossible_ms: float | None = None


class RoutingPolicy:
    def __init__(
        self,
        hotness: HotnessTracker | None = None,
        outliers: OutlierDetector | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        realtime_ttft_ms: float = defaults.ROUTING_REALTIME_TTFT_MS,
        ledger: CallLedger | None = None,
    ):
        self.hotness = hotness or HotnessTracker(clock=clock)
        self.outliers = outliers or OutlierDetector(clock=clock)
        self.ledger = ledger or CallLedger()
        self.realtime_ttft_ms = realtime_ttft_ms
        self._rng = rng or random.Random()
        self._clock = clock

    def observe(self, request: GenerationRequest) -> None:
        """Counts a request toward hotness; call once per request actually routed."""
        self.hotness.record(hotness_key(request))

    def classify(self, request: GenerationRequest) -> RequestClass:
        return tiers.classify(request, self.hotness.is_hot(hotness_key(request)))

    def choose(
        self,
        request: GenerationRequest,
        replicas: list[ReplicaState],
        exclude: frozenset[str] = frozenset(),
        explain: bool = True,
    ) -> Decision:
        """Picks a replica, or none with a retry hint; ``exclude`` holds replicas that already failed this request.

        Without ``explain`` the decision's reasons stay empty: the same choice, without writing out why."""
        request_class = self.classify(request)
        order = tiers.tier_order(request_class, replicas)
        decision = Decision(request_class, order, None)
        reasons = decision.reasons if explain else None
        if reasons is not None:
            reasons.append(f"class {request_class.value}; tiers in order: {', '.join(t.name.lower() for t in order)}")
        remaining = request.remaining_s()
        budget_ms = defaults.ROUTING_DEFAULT_BUDGET_MS if remaining is None else remaining * 1000
        usable = [
            filters.not_excluded(exclude),
            filters.not_ejected(self.outliers),
            filters.not_draining,
            filters.precise_enough(request),
        ]
        now = self._clock()
        by_tier = {
            tier: [Outlook(r, self.ledger, now) for r in members]
            for tier, members in filters.candidates(request, replicas, order, usable, reasons).items()
        }
        chosen = self._passes(request, request_class, by_tier, budget_ms, reasons)
        if chosen is not None:
            decision.chosen = chosen.replica
            return decision
        outlooks = [o for members in by_tier.values() for o in members]
        unhurried = min((o.unhurried_finish_ms(request.max_new_tokens) for o in outlooks), default=None)
        if unhurried is not None and unhurried > budget_ms:
            decision.impossible_ms = unhurried
            if reasons is not None:
                reasons.append(f"no replica could finish within {budget_ms:.0f} ms even idle: DEADLINE_EXCEEDED")
            return decision
        # A retry fits once the work ahead on the nearest-to-fitting replica has drained by the overshoot.
        overshoot = min((o.paced_finish_ms(request.max_new_tokens) - budget_ms for o in outlooks), default=None)
        late_ms = defaults.ROUTING_NO_REPLICA_RETRY_AFTER_MS if overshoot is None else overshoot
        decision.retry_after_ms = int(max(constants.MIN_RETRY_AFTER_MS, late_ms))
        if reasons is not None:
            reasons.append("no tier has room: RESOURCE_EXHAUSTED")
        return decision

    def _passes(
        self,
        request: GenerationRequest,
        request_class: RequestClass,
        by_tier: dict[Tier, list[Outlook]],
        budget_ms: float,
        reasons: list[str] | None,
    ) -> Outlook | None:
        finish = expectations.finish_within(request.max_new_tokens, budget_ms * defaults.ROUTING_DEADLINE_HEADROOM)
        harmless = expectations.no_harm()
        realtime = request_class == RequestClass.REALTIME
        chosen = None
        if realtime and self.realtime_ttft_ms < budget_ms:
            first_token = expectations.first_token_within(self.realtime_ttft_ms * defaults.ROUTING_TTFT_HEADROOM)
            chosen = self._first_tier_meeting(by_tier, [first_token, finish, harmless], reasons)
        if chosen is None and realtime:
            chosen = self._soonest_first_token(by_tier, [finish, harmless], reasons)
        if chosen is None and not realtime:
            chosen = self._first_tier_meeting(by_tier, [finish, harmless], reasons)
        if chosen is None:
            in_time = expectations.paced_finish_within(request.max_new_tokens, budget_ms)
            chosen = self._last_pass(by_tier, in_time, request.max_new_tokens, realtime, reasons)
        return chosen

    def _first_tier_meeting(
        self, by_tier: dict[Tier, list[Outlook]], wanted: list[Expectation], reasons: list[str] | None
    ) -> Outlook | None:
        """One replica of the first tier (in order) whose replicas meet every expectation; None if no tier's do."""
        for tier, usable in by_tier.items():
            meeting = [o for o in usable if all(e.met(o) for e in wanted)]
            if reasons is None:
                if meeting:
                    return picker.two_choices(meeting, self._rng)
                continue
            name, wants = tier.name.lower(), " and ".join(e.wanted for e in wanted)
            if not meeting:
                best = (
                    ", ".join(f"best expected {e.expected(min(usable, key=e.predicted))}" for e in wanted)
                    if usable
                    else "no usable replica"
                )
                reasons.append(f"{name}: no room for a {wants} ({best}); spilling over")
                continue
            chosen = picker.two_choices(meeting, self._rng)
            reasons.append(
                f"{name}: {len(meeting)} of {len(usable)} usable replicas expect a {wants}; power of two choices "
                f"picked {chosen.replica.replica_id} ({_figures(chosen, wanted)})"
            )
            return chosen
        return None

    def _soonest_first_token(
        self, by_tier: dict[Tier, list[Outlook]], wanted: list[Expectation], reasons: list[str] | None
    ) -> Outlook | None:
        """Of every tier's replicas that meet the expectations, the one whose first token is expected soonest."""
        wants = " and ".join(e.wanted for e in wanted) if reasons is not None else ""
        meeting = [o for usable in by_tier.values() for o in usable if all(e.met(o) for e in wanted)]
        if not meeting:
            if reasons is not None:
                reasons.append(f"no replica of any tier expects a {wants}")
            return None
        chosen = picker.soonest_first_token(meeting)
        if reasons is None:
            return chosen
        reasons.append(
            f"{chosen.replica.record.tier}: {chosen.replica.replica_id} has the soonest expected first token "
            f"({chosen.first_token_ms():.0f} ms) of the {len(meeting)} replicas of any tier that expect a "
            f"{wants} ({_figures(chosen, wanted)})"
        )
        return chosen

    @staticmethod
    def _last_pass(
        by_tier: dict[Tier, list[Outlook]],
        in_time: Expectation,
        new_tokens: int,
        realtime: bool,
        reasons: list[str] | None,
    ) -> Outlook | None:
        """Of every tier's replicas that fit ``in_time``: for REALTIME the soonest to end, else the least harm."""
        meeting = [o for usable in by_tier.values() for o in usable if in_time.met(o)]
        if not meeting:
            if reasons is not None:
                reasons.append(f"no replica of any tier expects a {in_time.wanted}")
            return None
        if realtime:
            chosen, why = picker.soonest_paced_finish(meeting, new_tokens), "is expected to end it soonest"
        else:
            chosen = picker.least_harm(meeting, list(by_tier))
            why = f"puts the fewest answers in flight at risk ({chosen.answers_put_at_risk()})"
        if reasons is not None:
            reasons.append(
                f"{chosen.replica.record.tier}: {chosen.replica.replica_id} {why} of the {len(meeting)} replicas of "
                f"any tier that expect a {in_time.wanted} ({_figures(chosen, [in_time])})"
            )
        return chosen


def _figures(chosen: Outlook, wanted: list[Expectation]) -> str:
    expected = ", ".join(e.expected(chosen) for e in wanted)
    return f"load {chosen.load()}/{chosen.replica.record.capacity}, expected {expected}"
