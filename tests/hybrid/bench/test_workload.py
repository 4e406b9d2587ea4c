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
    assert set(counts) == set(PHASES)
    # Expected 600, 1000 and 600 arrivals; Poisson's spread is about sqrt(n), 10% is over 4 sigma.
    assert counts["steady"] == pytest.approx(600, rel=0.10)
    assert counts["burst"] == pytest.approx(1000, rel=0.10)
    assert counts["recovery"] == pytest.approx(600, rel=0.10)
    for arrival in arrivals:
        start, end = {name: (s, e) for name, s, e, _ in config().phases()}[arrival.phase]
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
