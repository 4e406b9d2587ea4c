"""The report's arithmetic on synthetic records, and the files it writes."""

from __future__ import annotations

import json

import pytest

from hybrid.bench.loadgen import Record, RunResult
from hybrid.bench.report import (
    TierCost,
    build_report,
    by_replica,
    cost_summary,
    markdown,
    percentile,
    summarize_records,
    timeline,
    write_report,
)
from hybrid.bench.workload import WorkloadConfig

TIERS = {"edge": TierCost(2, 0.10), "private": TierCost(1, 2.50), "public": TierCost(1, 1.20)}


def record(
    index: int,
    priority: str = "REALTIME",
    status: str = "OK",
    sent: float = 0.0,
    ttft: float | None = 0.1,
    latency: float = 0.5,
    tokens: int = 10,
    tier: str = "edge",
) -> Record:
    ok = status == "OK"
    return Record(
        request_id=f"r{index}",
        priority=priority,
        phase="steady",
        affinity_key="k1",
        scheduled_s=sent,
        sent_s=sent,
        first_token_s=sent + ttft if ttft is not None and ok else None,
        end_s=sent + latency,
        status=status,
        completion_tokens=tokens if ok else 0,
        prompt_tokens=5 if ok else 0,
        tier=tier if ok else "",
    )


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def test_a_group_adds_up_and_its_latencies_count_only_successes():
    records = [record(i, ttft=(i + 1) / 1000, latency=(i + 1) / 100) for i in range(100)]
    records += [record(100 + i, status="RESOURCE_EXHAUSTED", latency=0.001) for i in range(3)]
    records += [record(200, status="DEADLINE_EXCEEDED", latency=2.0)]
    summary = summarize_records(records, duration_s=10.0)
    assert summary["sent"] == 104
    assert summary["succeeded"] == 100 and summary["failed"] == 4
    assert summary["sent"] == summary["succeeded"] + summary["failed"]
    assert summary["failed_by_code"] == {"DEADLINE_EXCEEDED": 1, "RESOURCE_EXHAUSTED": 3}
    assert summary["success_rate"] == pytest.approx(100 / 104)
    assert summary["ttft_ms"] == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert summary["latency_ms"] == {"p50": 500.0, "p95": 950.0, "p99": 990.0}
    assert summary["completion_tokens"] == 1000 and summary["prompt_tokens"] == 500
    assert summary["tokens_per_s"] == pytest.approx(100.0)
    assert summary["tier_mix"] == {"edge": 100, "private": 0, "public": 0}


def test_an_empty_group_has_no_rates():
    summary = summarize_records([], duration_s=1.0)
    assert summary["sent"] == 0 and summary["success_rate"] is None
    assert summary["ttft_ms"] == {"p50": None, "p95": None, "p99": None}


def test_cost_per_million_tokens_is_provisioned_dollars_over_served_tokens():
    # One hour: edge 2 x $0.10 + private $2.50 + public $1.20 = $3.90.
    records = [record(0, tokens=600_000, tier="edge"), record(1, tokens=400_000, tier="private")]
    records.append(record(2, status="UNAVAILABLE", tokens=1_000_000))  # failed: served nothing
    cost = cost_summary(records, duration_s=3600.0, tiers=TIERS)
    assert cost["dollars"] == pytest.approx(3.90)
    assert cost["completion_tokens"] == 1_000_000
    assert cost["cost_per_million_tokens"] == pytest.approx(3.90)
    assert cost["tiers"]["edge"]["dollars"] == pytest.approx(0.20)
    assert cost["tiers"]["edge"]["cost_per_million_tokens"] == pytest.approx(0.20 / 0.6)
    assert cost["tiers"]["private"]["cost_per_million_tokens"] == pytest.approx(2.50 / 0.4)
    assert cost["tiers"]["public"]["cost_per_million_tokens"] is None  # idle: paid, served nothing
    # Half an hour costs half; no tokens at all has no cost per token.
    assert cost_summary(records, 1800.0, TIERS)["dollars"] == pytest.approx(1.95)
    assert cost_summary(records[2:], 3600.0, TIERS)["cost_per_million_tokens"] is None


def test_class_costs_add_up_to_the_configuration():
    records = [
        record(0, "REALTIME", tokens=300_000, tier="edge"),
        record(1, "INTERACTIVE", tokens=300_000, tier="private"),
        record(2, "REALTIME", tokens=100_000, tier="private"),
        record(3, "BATCH", tokens=0, tier="private"),
    ]
    run = RunResult("router", "x", records, duration_s=3600.0)
    summary = build_report([run], TIERS)["configurations"]["router"]
    classes = summary["classes"]
    # Private's $2.50 splits 3:1 between INTERACTIVE and REALTIME; idle public's $1.20 by all tokens (3:4).
    assert classes["INTERACTIVE"]["cost"]["dollars"] == pytest.approx(2.50 * 0.75 + 1.20 * 3 / 7)
    assert classes["REALTIME"]["cost"]["dollars"] == pytest.approx(0.20 + 2.50 * 0.25 + 1.20 * 4 / 7)
    assert classes["BATCH"]["cost"]["cost_per_million_tokens"] is None
    assert sum(c["cost"]["dollars"] for c in classes.values()) == pytest.approx(summary["cost"]["dollars"])


def test_timeline_bins_sends_by_sent_time_and_tokens_by_end_time():
    records = [
        record(0, sent=0.2, latency=0.5),
        record(1, sent=0.7, latency=1.0),
        record(2, sent=1.5, status="RESOURCE_EXHAUSTED"),
    ]
    rows = timeline(records, duration_s=3.0, bin_s=1.0)
    assert [r["sent"] for r in rows] == [2, 1, 0]
    assert [r["success_rate"] for r in rows] == [1.0, 0.0, None]
    assert [r["tokens"] for r in rows] == [10, 10, 0]


def test_goal_check_compares_router_and_baseline():
    baseline = [record(i, latency=1.0, ttft=0.6) for i in range(90)] + [
        record(90 + i, status="RESOURCE_EXHAUSTED") for i in range(10)
    ]
    router = [record(i, ttft=0.05, tier="edge") for i in range(100)]
    report = build_report(
        [RunResult("baseline", "b", baseline, duration_s=60.0), RunResult("router", "r", router, duration_s=60.0)],
        TIERS,
    )
    goal = report["goal"]
    assert goal["router_meets_goal"] and goal["baseline_falls_short"] and goal["cost_no_higher"] and goal["met"]
    assert goal["baseline_success_rate"] == pytest.approx(0.9)
    assert goal["router_realtime_ttft_p99_ms"] == pytest.approx(50.0)
    assert build_report([RunResult("router", "r", router, duration_s=60.0)], TIERS)["goal"] is None


def test_realtime_answers_are_told_replica_by_replica_with_their_first_tokens_and_pace():
    def answered(index: int, replica: str, ttft: float, latency: float, tokens: int, **fields) -> Record:
        made = record(index, ttft=ttft, latency=latency, tokens=tokens, tier="public", **fields)
        made.replica_id = replica
        return made

    records = [
        answered(0, "pub-a", 0.1, 1.1, 11),  # 10 tokens after the first in 1.0 s: 100 ms a token
        answered(1, "pub-a", 0.3, 0.8, 6),
        answered(2, "pub-b", 0.2, 0.2, 1),  # one token: no pace
        answered(3, "pub-b", 0.2, 0.5, 4, priority="BATCH"),
        answered(4, "pub-b", 0.2, 0.5, 4, status="RESOURCE_EXHAUSTED"),
    ]
    records[0].replica_ttft_ms, records[0].replica_queue_ms = 60.0, 10.0
    records[1].replica_ttft_ms, records[1].replica_queue_ms = 250.0, 200.0
    rows = by_replica(records)
    assert [(r["replica"], r["answered"]) for r in rows] == [("pub-a", 2), ("pub-b", 1)]
    assert rows[0]["ttft_ms"] == {"p50": 100.0, "p95": 300.0, "p99": 300.0}
    # Of pub-a's slow first token (300 ms), 250 ms passed at the replica and 200 ms of that in its queue.
    assert rows[0]["replica_ttft_ms"] == {"p50": 60.0, "p95": 250.0, "p99": 250.0}
    assert rows[0]["replica_queue_ms"] == {"p50": 10.0, "p95": 200.0, "p99": 200.0}
    assert rows[0]["token_ms_p50"] == pytest.approx(100.0)
    assert rows[1]["token_ms_p50"] is None
    assert rows[1]["replica_ttft_ms"] == {"p50": None, "p95": None, "p99": None}  # not timed by the replica
    told = markdown(build_report([RunResult("router", "r", records, duration_s=2.0)], TIERS))
    assert "| router | pub-a | public | 2 | 100 / 300 / 300 | 60 / 250 / 250 | 10 / 200 / 200 | 100.0 |" in told


def test_write_report_writes_json_markdown_records_and_plots(tmp_path):
    workload = WorkloadConfig(steady_rps=1, steady_s=2, burst_s=2, recovery_s=2)
    runs = []
    for name in ("baseline", "router"):
        records = [
            record(i, priority=p, sent=i * 0.1, tier=t, status=s)
            for i, (p, t, s) in enumerate(
                [("REALTIME", "edge", "OK"), ("INTERACTIVE", "private", "OK"), ("BATCH", "public", "OK")] * 10
                + [("BATCH", "", "RESOURCE_EXHAUSTED")]
            )
        ]
        runs.append(RunResult(name, "127.0.0.1:1", records, started_at=1.0, duration_s=6.0))
    report = write_report(runs, TIERS, tmp_path, workload, meta={"command": "hybrid bench overload"})
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["configurations"].keys() == {"baseline", "router"}
    assert on_disk["burst_window_s"] == [2.0, 4.0]
    for summary in on_disk["configurations"].values():
        assert summary["all"]["sent"] == 31 == summary["all"]["succeeded"] + summary["all"]["failed"]
        assert set(summary["classes"]) == {"REALTIME", "INTERACTIVE", "BATCH"}
    for plot in ("latency_cdf.png", "timeline.png", "tier_mix.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["files"]["plots"] == ["latency_cdf.png", "timeline.png", "tier_mix.png"]
    text = (tmp_path / "report.md").read_text()
    assert text == markdown(report)
    assert "| baseline | BATCH | 11 | 10 | 1 (RESOURCE_EXHAUSTED 1) | 90.9% |" in text
    assert "| router | all | 31 | 30 |" in text
    assert "| router | – | edge | 10 | 100 / 100 / 100 |" in text, "REALTIME by replica (these records name none)"
    stored = json.loads((tmp_path / "records.json").read_text())
    assert [len(run["records"]) for run in stored] == [31, 31]
    assert Record.from_dict(stored[0]["records"][0]) == runs[0].records[0]
