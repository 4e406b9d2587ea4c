"""The scaling signal: each tier's desired replica count, exported as a Prometheus gauge an autoscaler reads.

The router sees a burst first: every request passes it before any replica queues it. Per tier, this counts the
requests whose class puts that tier first (``policy.tiers``; a request spilled elsewhere still wanted it) per
second, smooths the counts with Holt's linear trend (a level and a slope) and forecasts the arrival rate
``horizon_s`` ahead — about the time a new replica takes to start — so that a tier asks for replicas while the
burst is still rising, not after it peaked. The desired count is the most of:

* the forecast's demand: Little's law, forecast rate x a request's mean time on the tier's replicas (what they
  report), over what a replica holds at ``target_utilization`` of its capacity;
* the load now: requests the tier's replicas report waiting or running, over the same; a queue beyond the
  capacity is a wait the policy already expects (``Outlook.wait_ms``);
* one more than the tier serves with now, while requests spilled past it for want of room or missed their
  deadline on it within the last ``pressure_window_s``: what the policy predicted did not fit.

It reads, in ``hybrid_router_tier_desired_replicas{tier}``:

* KEDA's Prometheus scaler, as ``max(hybrid_router_tier_desired_replicas{tier="private"})`` with
  ``metricType: AverageValue`` and ``threshold: "1"`` (one replica per unit): ``docs/autoscaling.md``;
* Ray Serve's custom autoscaling policy: ``cloud.autoscaling.RouterSignalPolicy``, which the Serve config
  the cloud tier writes names when it is given the Prometheus that scrapes the router.

Where the router runs as N worker processes (``hybrid.router.workers``) each sees about 1/N of the arrivals (the
kernel spreads connections evenly over many clients): each scales its counts by N, and the gauge's
multiprocess mode keeps the largest of the workers' counts.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge

from hybrid.protocol import Tier
from hybrid.router import defaults
from hybrid.router.ledger import Call, CallHooks, Outcome

if TYPE_CHECKING:
    from hybrid.router.policy.ejection import OutlierDetector
    from hybrid.router.policy.policy import Decision
    from hybrid.router.policy.replica import ReplicaState

TIERS = tuple(tier.name.lower() for tier in Tier)
LEVEL_ALPHA = defaults.SCALING_LEVEL_ALPHA
TREND_BETA = defaults.SCALING_TREND_BETA
HORIZON_S = defaults.SCALING_HORIZON_S
TARGET_UTILIZATION = defaults.SCALING_TARGET_UTILIZATION
PRESSURE_WINDOW_S = defaults.SCALING_PRESSURE_WINDOW_S
IDLE_PER_S = defaults.SCALING_IDLE_PER_S


class HoltForecast:
    """Holt's linear trend (double exponential smoothing) over a series of one value per second."""

    def __init__(self, alpha: float = LEVEL_ALPHA, beta: float = TREND_BETA):
        if not (0 < alpha <= 1 and 0 < beta <= 1):
            raise ValueError(f"alpha {alpha} and beta {beta} must both be in (0, 1]")
        self.alpha = alpha
        self.beta = beta
        self.level: float | None = None
        self.trend = 0.0

    def observe(self, value: float) -> None:
        if self.level is None:
            self.level = value
            return
        previous = self.level
        self.level = self.alpha * value + (1 - self.alpha) * (previous + self.trend)
        self.trend = self.beta * (self.level - previous) + (1 - self.beta) * self.trend

    def forecast(self, steps_ahead: float) -> float:
        """The value ``steps_ahead`` seconds on; never below zero."""
        if self.level is None:
            return 0.0
        return max(0.0, self.level + steps_ahead * self.trend)


def replicas_for(rate_per_s: float, request_s: float, slots_per_replica: float) -> int:
    """Little's law: the replicas that hold ``rate_per_s`` arrivals each ``request_s`` long, at
    ``slots_per_replica`` requests at once each."""
    return math.ceil(rate_per_s * request_s / slots_per_replica - 1e-9)


@dataclass
class TierSignal:
    """One tier's figures at the last tick."""

    arrivals_per_s: float = 0.0
    forecast_per_s: float = 0.0
    serving: int = 0
    desired: int = 0
    # What Little's law works with: a request's mean time on the tier's replicas (as they report it, else the
    # default), and the requests a replica holds at the target utilization.
    request_ms: float = 0.0
    slots_per_replica: float = 0.0
    # What raised the desired count to where it is: forecast, load, pressure, or idle.
    driver: str = "idle"


class ScalingSignal(CallHooks):
    """Counts each tier's arrivals per second and, every ``tick``, works out its desired replica count."""

    def __init__(
        self,
        outliers: OutlierDetector,
        replicas: Callable[[], list[ReplicaState]],
        registry: CollectorRegistry | None = None,
        horizon_s: float = HORIZON_S,
        target_utilization: float = TARGET_UTILIZATION,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.outliers = outliers
        self.replicas = replicas
        self.horizon_s = horizon_s
        self.target_utilization = target_utilization
        self.workers = workers
        self._clock = clock
        self._second = math.floor(clock())
        self._arrivals: Counter[str] = Counter()
        self._forecasts = {tier: HoltForecast() for tier in TIERS}
        # When a request spilled past each tier for want of room, or missed its deadline there.
        self._pressure: dict[str, deque[float]] = {tier: deque(maxlen=256) for tier in TIERS}
        self.tiers = {tier: TierSignal() for tier in TIERS}
        registry = registry or CollectorRegistry()
        self.desired_gauge = Gauge(
            "hybrid_router_tier_desired_replicas",
            "Replicas each tier should run to serve the arrival rate forecast ahead (scaling signal).",
            ["tier"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.arrivals_gauge = Gauge(
            "hybrid_router_tier_arrivals_per_second",
            "Requests per second whose class puts this tier first, smoothed (Holt's level).",
            ["tier"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.forecast_gauge = Gauge(
            "hybrid_router_tier_arrivals_forecast_per_second",
            "The arrival rate forecast the horizon ahead (Holt's linear trend).",
            ["tier"],
            registry=registry,
            multiprocess_mode="livemax",
        )

    # --- notes from the data plane ---
    def routed(self, decision: Decision, attempt: int) -> None:
        if attempt or not decision.tier_order:
            return
        first = decision.tier_order[0].name.lower()
        self._arrivals[first] += 1
        chosen = decision.chosen
        if chosen is not None and chosen.record.tier != first:
            self._pressure[first].append(self._clock())

    def refused(self, decision: Decision, attempt: int) -> None:
        if decision.tier_order:
            first = decision.tier_order[0].name.lower()
            if not attempt:
                self._arrivals[first] += 1
            self._pressure[first].append(self._clock())

    def gave_up(self, decision: Decision) -> None:
        """Every replica tried for a request failed or was full: pressure on the tier it wanted."""
        if decision.tier_order:
            self._pressure[decision.tier_order[0].name.lower()].append(self._clock())

    def ended(self, call: Call, outcome: Outcome, now: float) -> None:
        if outcome.label == "deadline_exceeded":
            self._pressure.setdefault(call.replica.record.tier, deque(maxlen=256)).append(self._clock())

    # --- every second or so ---
    def tick(self) -> None:
        """Folds each whole second gone by into the forecasts, then sets every tier's desired count."""
        now = self._clock()
        second = math.floor(now)
        elapsed = second - self._second
        if elapsed > 0:
            # A tick held up by a busy loop spreads what it counted over the seconds it covers; a long idle gap
            # folds in as a minute of zeros, not thousands.
            steps = min(elapsed, 60)
            for tier, forecast in self._forecasts.items():
                per_second = self._arrivals.get(tier, 0) * self.workers / elapsed
                for _ in range(steps):
                    forecast.observe(per_second)
            self._arrivals.clear()
            self._second = second
        replicas = self.replicas()
        for tier in TIERS:
            self.tiers[tier] = signal = self._tier_signal(tier, [r for r in replicas if r.record.tier == tier], now)
            self.desired_gauge.labels(tier).set(signal.desired)
            self.arrivals_gauge.labels(tier).set(signal.arrivals_per_s)
            self.forecast_gauge.labels(tier).set(signal.forecast_per_s)

    def _tier_signal(self, tier: str, members: list[ReplicaState], now: float) -> TierSignal:
        forecast = self._forecasts[tier]
        serving = [r for r in members if not r.draining and not self.outliers.ejected(r)]
        signal = TierSignal(
            arrivals_per_s=max(0.0, forecast.level or 0.0),
            forecast_per_s=forecast.forecast(self.horizon_s),
            serving=len(serving),
        )
        capacity = sum(r.capacity for r in serving) / len(serving) if serving else 1.0
        per_replica = capacity * self.target_utilization
        reported_ms = [r.mean_request_ms for r in serving if r.mean_request_ms > 0]
        signal.request_ms = sum(reported_ms) / len(reported_ms) if reported_ms else defaults.ROUTING_DEFAULT_REQUEST_MS
        signal.slots_per_replica = per_replica
        forecast_per_s = signal.forecast_per_s if signal.forecast_per_s >= IDLE_PER_S else 0.0
        by_forecast = replicas_for(forecast_per_s, signal.request_ms / 1000, per_replica)
        by_load = math.ceil(sum(r.queue_depth + r.active for r in serving) / per_replica - 1e-9)
        pressure = self._pressure.get(tier, ())
        pressed = bool(pressure) and now - pressure[-1] <= PRESSURE_WINDOW_S
        by_pressure = len(serving) + 1 if pressed else 0
        drivers = {"forecast": by_forecast, "load": by_load, "pressure": by_pressure}
        signal.desired = max(drivers.values())
        signal.driver = next((name for name, count in drivers.items() if count == signal.desired > 0), "idle")
        return signal
