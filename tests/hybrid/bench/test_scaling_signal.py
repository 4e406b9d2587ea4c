"""The scaling signal in the overload bench: sampled from a real router's status page, summed up against the
burst, and plotted in the report beside the arrival rate."""

from __future__ import annotations

import json
import time

import pytest

from hybrid.bench.loadgen import RunResult
from hybrid.bench.report import markdown, write_report
from hybrid.bench.scaling_signal import SAMPLED, SignalSampler, first_reached, summarize_signal
from hybrid.bench.workload import WorkloadConfig
from tests.hybrid.bench.test_report import TIERS, record
from tests.hybrid.router.status.fleet import StatusFleet

pytestmark = pytest.mark.timeout(60)


def sample(t_s: float, desired: dict[str, int], arrivals: float = 1.0) -> dict:
    tiers = {
        tier: {"arrivals_per_s": arrivals, "forecast_per_s": arrivals, "desired_replicas": desired.get(tier, 1)}
        for tier in ("edge", "private", "public")
    }
    return {"at": 1000.0 + t_s, "t_s": t_s, **tiers}


def test_the_sampler_reads_every_tier_from_a_running_router():
    fleet = StatusFleet()
    try:
        with SignalSampler(f"http://{fleet.http_address}/status.json", interval_s=0.1) as sampler:
            fleet.send(3, "interactive")
            time.sleep(1.0)
        signal = sampler.record(started_at=sampler.samples[0]["at"])
    finally:
        fleet.stop()
    assert len(signal["samples"]) >= 3 and signal["failed_polls"] == 0
    first = signal["samples"][0]
    assert first["t_s"] == 0 and set(first) >= {"edge", "private", "public"}
    assert set(first["private"]) == set(SAMPLED)
    assert first["private"]["request_ms"] > 0 and first["private"]["slots_per_replica"] > 0


def test_the_summary_says_when_each_tier_asked_for_more_against_the_peak_of_requests():
    samples = [sample(t, {"private": 1}) for t in (0.0, 1.0, 2.0)]
    samples += [sample(3.0, {"private": 2}), sample(4.0, {"private": 4}), sample(5.0, {"private": 3})]
    timeline = [{"t_s": float(t), "sent": sent} for t, sent in enumerate([2, 2, 2, 6, 12, 20, 8])]
    summary = summarize_signal({"samples": samples}, timeline, [2.5, 6.0])
    assert summary["sent_peaked_at_s"] == 5.0
    assert summary["tiers"]["private"] == {"desired_before_burst": 1, "most_desired": 4, "rose_at_s": 3.0}
    assert summary["tiers"]["edge"]["rose_at_s"] is None


def test_the_report_plots_the_signal_beside_the_arrival_rate(tmp_path):
    workload = WorkloadConfig(steady_rps=1, steady_s=2, burst_s=2, recovery_s=2)
    runs = [RunResult("router", "r", [record(i, sent=i * 0.2) for i in range(30)], started_at=1000.0, duration_s=6.0)]
    signal = {"interval_s": 0.5, "failed_polls": 0, "samples": [sample(t / 2, {"edge": 1 + t // 5}) for t in range(12)]}
    report = write_report(runs, TIERS, tmp_path, workload, meta={"scaling_signal": signal})
    assert "scaling_signal.png" in report["files"]["plots"]
    assert (tmp_path / "scaling_signal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["scaling_signal"]["tiers"]["edge"]["most_desired"] == 3
    assert (
        "Scaling signal (desired replicas, before the burst → most): edge 1 → 3 (rose at 2.5 s)"
        in (tmp_path / "report.md").read_text()
    )


def ramp_samples(desired_by_time: dict[float, int], rate: float = 10.0) -> list[dict]:
    """Half-second samples of a private tier whose replicas take 800 ms a request and hold 4 each at once."""
    samples = []
    for step in range(41):
        t = step / 2
        private = {"arrivals_per_s": rate if t >= 10 else 2.0, "forecast_per_s": rate, "request_ms": 800.0}
        desired = max((count for at, count in desired_by_time.items() if at <= t), default=1)
        samples.append(
            {"at": 1000.0 + t, "t_s": t, "private": {**private, "desired_replicas": desired, "slots_per_replica": 4.0}}
        )
    return samples


def test_the_lead_is_how_long_before_the_plateau_the_desired_count_reached_what_the_plateau_needs():
    # A ramp from 5 s to 10 s, the plateau from 10 s to 15 s at 10/s: 10 x 0.8 s / 4 slots = 2 replicas.
    samples = ramp_samples({0.0: 1, 7.0: 2, 12.0: 3})
    summary = summarize_signal({"samples": samples}, [{"t_s": 12.0, "sent": 10}], [10.0, 15.0], ramp_start_s=5.0)
    private = summary["tiers"]["private"]
    assert private["peak_need"] == 2 and private["plateau_arrivals_per_s"] == 10.0
    assert (private["reached_peak_need_at_s"], private["lead_s"]) == (7.0, 3.0)
    assert private["rose_at_s"] == 7.0, "a rise on the ramp counts: it is the burst building"
    late = summarize_signal({"samples": ramp_samples({0.0: 1, 12.0: 2})}, [], [10.0, 15.0], ramp_start_s=5.0)
    assert late["tiers"]["private"]["lead_s"] == -2.0, "reached after the plateau began: a negative lead"
    never = summarize_signal({"samples": ramp_samples({0.0: 1})}, [], [10.0, 15.0], ramp_start_s=5.0)
    assert never["tiers"]["private"]["reached_peak_need_at_s"] is None


def test_first_reached_looks_only_from_the_given_time():
    points = [(0.0, 3), (1.0, 1), (2.0, 2), (3.0, 3)]
    assert first_reached(points, 0.5, 2) == 2.0
    assert first_reached(points, 0.5, 4) is None


def test_the_report_states_the_lead_of_each_tier_on_a_ramped_burst(tmp_path):
    workload = WorkloadConfig(steady_rps=1, steady_s=5, ramp_s=5, burst_s=5, recovery_s=5, burst_multiplier=10)
    runs = [RunResult("router", "r", [record(i, sent=i * 0.2) for i in range(30)], started_at=1000.0, duration_s=20.0)]
    signal = {"interval_s": 0.5, "failed_polls": 0, "samples": ramp_samples({0.0: 1, 8.5: 2})}
    report = write_report(runs, TIERS, tmp_path, workload, meta={"scaling_signal": signal})
    assert report["ramp_window_s"] == [5.0, 10.0] and report["burst_window_s"] == [10.0, 15.0]
    assert report["scaling_signal"]["tiers"]["private"]["lead_s"] == 1.5
    assert "private needs 2 at 10/s, reached at 8.5 s, 1.5 s before the plateau" in markdown(report)
    assert (tmp_path / "scaling_signal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
