"""The scaling signal with a fake clock and hand-made decisions: it rises ahead of a burst, not after it."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from hybrid.discovery import ReplicaRecord
from hybrid.protocol import Tier
from hybrid.router.ledger import Call, Outcome
from hybrid.router.policy.ejection import OutlierDetector
from hybrid.router.policy.policy import Decision
from hybrid.router.policy.replica import ReplicaState
from hybrid.router.policy.tiers import RequestClass
from hybrid.router.scaling import HoltForecast, ScalingSignal


class FakeClock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def replica(replica_id: str, tier: str = "private", capacity: int = 4, request_ms: float = 1000.0) -> ReplicaState:
    record = ReplicaRecord(
        id=replica_id,
        address="127.0.0.1",
        port=1,
        tier=tier,
        model="m",
        precision="bf16",
        region="r",
        capacity=capacity,
    )
    return ReplicaState(record=record, mean_request_ms=request_ms)


def signal_of(replicas: list[ReplicaState], clock: FakeClock, **options) -> tuple[ScalingSignal, CollectorRegistry]:
    registry = CollectorRegistry()
    signal = ScalingSignal(OutlierDetector(clock=clock), lambda: replicas, registry, clock=clock, **options)
    return signal, registry


def interactive(chosen: ReplicaState | None) -> Decision:
    return Decision(RequestClass.COLD_INTERACTIVE, [Tier.PRIVATE, Tier.PUBLIC, Tier.EDGE], chosen)


def run_second(signal: ScalingSignal, clock: FakeClock, arrivals: int, chosen: ReplicaState) -> None:
    for _ in range(arrivals):
        signal.routed(interactive(chosen), 0)
    clock.now += 1
    signal.tick()


def test_holt_follows_a_trend_and_forecasts_along_it():
    forecast = HoltForecast(alpha=0.5, beta=0.5)
    for value in range(0, 40, 2):  # rising 2 a second
        forecast.observe(value)
    assert forecast.level == pytest.approx(38, abs=0.5)
    assert forecast.trend == pytest.approx(2, abs=0.1)
    assert forecast.forecast(10) == pytest.approx(58, abs=1.5)
    assert HoltForecast().forecast(10) == 0.0
    with pytest.raises(ValueError, match="alpha"):
        HoltForecast(alpha=0)


def test_the_desired_count_rises_while_the_burst_is_still_rising():
    clock, state = FakeClock(), replica("p-1", capacity=4, request_ms=1000)
    signal, registry = signal_of([state], clock, horizon_s=15, target_utilization=1.0)
    for _ in range(30):
        run_second(signal, clock, 4, state)  # steady: 4 a second x 1 s = 4 in flight = 1 replica
    assert signal.tiers["private"].desired == 1
    ramp = [4 + 4 * step for step in range(1, 11)]  # to 44 a second over ten seconds
    desired = []
    for rate in ramp:
        run_second(signal, clock, rate, state)
        desired.append(signal.tiers["private"].desired)
    peak_need = math.ceil(44 * 1.0 / 4)
    halfway = desired[len(ramp) // 2 - 1]  # when arrivals are at 24 a second, the need of the moment is 6
    assert halfway >= peak_need, f"halfway up the ramp the signal asks {halfway}, the peak needs {peak_need}"
    assert signal.tiers["private"].driver == "forecast"
    assert registry.get_sample_value("hybrid_router_tier_desired_replicas", {"tier": "private"}) == desired[-1]
    assert registry.get_sample_value("hybrid_router_tier_arrivals_forecast_per_second", {"tier": "private"}) > 44


def test_after_a_burst_the_count_comes_back_down():
    clock, state = FakeClock(), replica("p-1", capacity=4, request_ms=1000)
    signal, _ = signal_of([state], clock, target_utilization=1.0)
    for _ in range(10):
        run_second(signal, clock, 40, state)
    assert signal.tiers["private"].desired >= 10
    for _ in range(60):
        run_second(signal, clock, 0, state)
    assert signal.tiers["private"].desired == 0 and signal.tiers["private"].driver == "idle"


def test_spillovers_for_want_of_room_ask_for_one_more_replica_until_they_stop():
    clock, private, public = FakeClock(), replica("p-1"), replica("q-1", tier="public")
    signal, _ = signal_of([private, public], clock, target_utilization=1.0)
    signal.routed(interactive(public), 0)  # private was first and did not take it
    clock.now += 1
    signal.tick()
    assert (signal.tiers["private"].desired, signal.tiers["private"].driver) == (2, "pressure")
    clock.now += 20
    signal.tick()
    assert signal.tiers["private"].driver != "pressure"


def test_deadline_misses_and_refusals_are_pressure_on_their_tier():
    clock, state = FakeClock(), replica("p-1")
    signal, _ = signal_of([state], clock)
    signal.ended(Call(state, 0.0, 1.0, 3, "BATCH"), Outcome("deadline_exceeded"), 0.0)
    clock.now += 1
    signal.tick()
    assert signal.tiers["private"].driver == "pressure"
    edge = replica("e-1", tier="edge")
    signal, _ = signal_of([edge], clock)
    signal.refused(Decision(RequestClass.REALTIME, [Tier.EDGE, Tier.PRIVATE], None), 0)
    clock.now += 1
    signal.tick()
    assert signal.tiers["edge"].desired == 2


def test_the_load_reported_now_is_a_floor():
    clock, state = FakeClock(), replica("p-1", capacity=4)
    state.queue_depth, state.active = 8, 4
    signal, _ = signal_of([state], clock, target_utilization=1.0)
    signal.tick()
    assert (signal.tiers["private"].desired, signal.tiers["private"].driver) == (3, "load")


def test_each_worker_scales_its_share_of_arrivals_by_the_worker_count():
    clock, state = FakeClock(), replica("p-1", capacity=4, request_ms=1000)
    alone, _ = signal_of([state], clock, target_utilization=1.0)
    one_of_four, _ = signal_of([state], clock, target_utilization=1.0, workers=4)
    for _ in range(20):
        for _ in range(8):
            alone.routed(interactive(state), 0)
        for _ in range(2):
            one_of_four.routed(interactive(state), 0)
        clock.now += 1
        alone.tick()
        one_of_four.tick()
    assert one_of_four.tiers["private"].desired == alone.tiers["private"].desired == 2


def test_a_long_idle_gap_folds_in_as_a_bounded_number_of_zeros():
    clock, state = FakeClock(), replica("p-1")
    signal, _ = signal_of([state], clock)
    run_second(signal, clock, 10, state)
    clock.now += 86_400
    signal.tick()
    assert signal.tiers["private"].arrivals_per_s < 0.01


def test_a_late_tick_spreads_its_count_over_the_seconds_it_covers():
    clock, state = FakeClock(), replica("p-1")
    on_time, _ = signal_of([state], clock)
    late, _ = signal_of([state], clock)
    for _ in range(3):
        for _ in range(10):
            on_time.routed(interactive(state), 0)
            late.routed(interactive(state), 0)
        clock.now += 1
        on_time.tick()
    late.tick()  # three seconds of arrivals at once, as a loop busy for three seconds would
    assert late._forecasts["private"].level == pytest.approx(on_time._forecasts["private"].level)


async def test_the_router_serve_flags_reach_the_signal():
    from hybrid.cli import build_parser
    from hybrid.router.server import Router, RouterConfig
    from tests.hybrid.router.fake_replicas import MemorySource

    args = build_parser().parse_args(
        ["router", "serve", "--scaling-horizon-s", "30", "--scaling-target-utilization", "0.5"]
    )
    config = RouterConfig(
        port=0,
        discovery="memory",
        scaling_horizon_s=args.scaling_horizon_s,
        scaling_target_utilization=args.scaling_target_utilization,
    )
    signal = Router(config, source=MemorySource([])).dataplane.scaling
    assert (signal.horizon_s, signal.target_utilization) == (30.0, 0.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["router", "serve", "--scaling-target-utilization", "0"])
