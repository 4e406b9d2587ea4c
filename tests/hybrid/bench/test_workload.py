"""The overload schedule: deterministic, at the configured rate in each phase, with the configured mix."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from hybrid.bench.workload import PHASES, WorkloadConfig, ZipfKeys, schedule


def config(**overrides) -> WorkloadConfig:
    fields = dict(steady_rps=20.0, burst_multiplier=5.0, steady_s=30.0, burst_s=10.0, recovery_s=30.0, seed=7)
    return WorkloadConfig(**{**fields, **overrides})


def test_the_same_config_gives_the_same_schedule_and_another_seed_another():
    first, second = schedule(config()), schedule(config())
    assert first == second
    assert schedule(config(seed=8)) != first


def test_each_phase_runs_at_its_rate():
    arrivals = schedule(config())
    counts = Counter(a.phase for a in arrivals)
    assert set(counts) == set(PHASES) - {"ramp"}, "no ramp unless asked for"
    # Expected 600, 1000 and 600 arrivals; Poisson's spread is about sqrt(n), 10% is over 4 sigma.
    assert counts["steady"] == pytest.approx(600, rel=0.10)
    assert counts["burst"] == pytest.approx(1000, rel=0.10)
    assert counts["recovery"] == pytest.approx(600, rel=0.10)
    for arrival in arrivals:
        start, end = {phase.name: (phase.start_s, phase.end_s) for phase in config().phases()}[arrival.phase]
        assert start <= arrival.at_s < end
    assert [a.at_s for a in arrivals] == sorted(a.at_s for a in arrivals)
    assert len({a.request_id for a in arrivals}) == len(arrivals)


def test_uniform_arrivals_are_evenly_spaced():
    arrivals = schedule(
        config(arrivals="uniform", steady_rps=10, burst_multiplier=2, steady_s=1, burst_s=1, recovery_s=1)
    )
    counts = Counter(a.phase for a in arrivals)
    assert counts == {"steady": 9, "burst": 19, "recovery": 9}
    burst = [a.at_s for a in arrivals if a.phase == "burst"]
    gaps = {round(b - a, 6) for a, b in zip(burst, burst[1:])}
    assert gaps == {0.05}


def test_class_mix_deadlines_and_lengths_follow_the_config():
    cfg = config(
        class_mix={"REALTIME": 0.2, "INTERACTIVE": 0.5, "BATCH": 0.3},
        prompt_words=(5, 9),
        max_new_tokens=(3, 6),
        deadlines_s={"REALTIME": 2, "INTERACTIVE": 10, "BATCH": 60},
    )
    arrivals = schedule(cfg)
    mix = Counter(a.priority for a in arrivals)
    for priority, fraction in cfg.class_mix.items():
        assert mix[priority] / len(arrivals) == pytest.approx(fraction, abs=0.03)
    for arrival in arrivals:
        assert arrival.deadline_s == cfg.deadlines_s[arrival.priority]
        assert 3 <= arrival.max_new_tokens <= 6
        words = arrival.prompt.split(": ", 1)[1].split()
        assert 5 <= len(words) <= 9
        assert arrival.affinity_key in arrival.prompt


def test_a_class_left_out_of_the_mix_never_arrives():
    arrivals = schedule(config(class_mix={"REALTIME": 1.0}))
    assert {a.priority for a in arrivals} == {"REALTIME"}


def test_affinity_keys_are_zipf_distributed():
    cfg = config(key_count=50, zipf_exponent=1.2)
    arrivals = schedule(cfg)
    counts = Counter(a.affinity_key for a in arrivals)
    keys = ZipfKeys(50, 1.2)
    assert counts["k0001"] / len(arrivals) == pytest.approx(keys.probability(1), abs=0.03)
    assert counts["k0001"] > counts["k0002"] > counts.get("k0010", 0)
    assert all(1 <= int(key[1:]) <= 50 for key in counts)
    assert sum(keys.probability(rank) for rank in range(1, 51)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"class_mix": {"REALTIME": 0.5, "INTERACTIVE": 0.7}}, "sum to 1"),
        ({"class_mix": {"URGENT": 1.0}}, "use only REALTIME, INTERACTIVE, BATCH"),
        ({"class_mix": {"REALTIME": 1.5, "BATCH": -0.5}}, "negative"),
        ({"prompt_words": (10, 5)}, "minimum must not exceed the maximum"),
        ({"max_new_tokens": (0, 5)}, "at least 1 token"),
        ({"max_new_tokens": (1, 100_000)}, "lower it"),
        ({"deadlines_s": {"REALTIME": 2}}, "give every priority a deadline"),
        ({"steady_s": 0, "burst_s": 0, "recovery_s": 0}, "give at least one phase a length"),
        ({"steady_rps": 1e6}, "lower steady_rps"),
        ({"steady_rps": 0}, "greater than 0"),
        ({"ramp_s": -1}, "greater than or equal to 0"),
        ({"ramp_s": 5, "burst_multiplier": 1}, "nothing to ramp to"),
    ],
)
def test_a_wrong_config_says_what_to_change(overrides, says):
    with pytest.raises(ValidationError, match=says):
        config(**overrides)


def test_burst_window_and_expected_requests():
    cfg = config()
    assert cfg.burst_window() == (30.0, 40.0)
    assert cfg.duration_s == 70.0
    assert cfg.expected_requests() == pytest.approx(2200.0)


def test_a_ramp_climbs_from_the_steady_rate_to_the_bursts_before_the_plateau():
    cfg = config(ramp_s=20.0)
    assert [(p.name, p.start_s, p.end_s) for p in cfg.phases()] == [
        ("steady", 0.0, 30.0),
        ("ramp", 30.0, 50.0),
        ("burst", 50.0, 60.0),
        ("recovery", 60.0, 90.0),
    ]
    assert cfg.burst_window() == (50.0, 60.0) and cfg.ramp_window() == (30.0, 50.0)
    # 20/s climbing to 100/s over 20 s: 1200 requests due on the ramp, 2200 elsewhere.
    assert cfg.expected_requests() == pytest.approx(3400.0)
    arrivals = schedule(cfg)
    ramp = [a.at_s for a in arrivals if a.phase == "ramp"]
    assert len(ramp) == pytest.approx(1200, rel=0.10)
    first_half = sum(1 for t in ramp if t < 40.0)
    # Due in the first half: 20 x 10 + 4 x 10^2 / 2 = 400; in the second, 800.
    assert first_half == pytest.approx(400, rel=0.15)
    assert len(ramp) - first_half == pytest.approx(800, rel=0.15)
    assert all(30.0 <= t < 50.0 for t in ramp)
    assert schedule(cfg) == arrivals, "the same seed gives the same schedule"
    assert len({a.request_id for a in arrivals}) == len(arrivals)


def test_uniform_arrivals_on_a_ramp_come_closer_together_as_it_climbs():
    cfg = config(arrivals="uniform", steady_rps=10, burst_multiplier=3, steady_s=0, ramp_s=2, burst_s=0, recovery_s=0)
    ramp = [a.at_s for a in schedule(cfg)]
    # 10/s to 30/s over 2 s: 40 due, the 40th exactly at the end (left out, as a phase's end is).
    assert len(ramp) == 39
    gaps = [b - a for a, b in zip(ramp, ramp[1:])]
    assert gaps == sorted(gaps, reverse=True)
    for (a, b), gap in zip(zip(ramp, ramp[1:]), gaps):
        rate_between = 10 + 10 * (a + b) / 2  # 10/s climbing by 10/s each second
        assert gap == pytest.approx(1 / rate_between, rel=0.01)


def test_without_a_ramp_the_schedule_is_the_step_it_always_was():
    assert schedule(config(ramp_s=0.0)) == schedule(config())
    assert [p.name for p in config().phases()] == ["steady", "burst", "recovery"]
