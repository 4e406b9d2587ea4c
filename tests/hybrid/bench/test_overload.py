"""`hybrid bench overload` end to end, and its command line's refusals."""

from __future__ import annotations

import json

import pytest

from hybrid.cli import main


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--mix", "REALTIME=0.5,INTERACTIVE=0.2"], "sum to 1"),
        (["--mix", "REALTIME"], "CLASS=FRACTION"),
        (["--steady-rps", "0"], "greater than 0"),
        (["--max-new-tokens", "0"], "at least 1 token"),
        (["--loadgen-processes", "0"], "loadgen_processes"),
        (["--edge-cpus", "4-x"], "CPU numbers and ranges"),
        (["--edge-cpus", "100000"], "name CPUs this process may use"),
    ],
)
def test_a_wrong_workload_is_refused_before_anything_starts(flags, says, tmp_path, capsys):
    assert main(["bench", "overload", "--no-cloud", "--out", str(tmp_path), *flags]) == 2
    assert says in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_bench_smoke_accounts_for_every_request(serve_cluster, int8_artifact, tmp_path):
    """A few seconds of the overload bench on the whole stack: every request sent ends in the report."""
    out = tmp_path / "report"
    code = main(
        [
            "bench",
            "overload",
            "--seconds", "6",
            "--steady-rps", "1",
            "--burst-x", "3",
            "--max-new-tokens", "4",
            "--cooldown-s", "1",
            "--artifact", str(int8_artifact),
            "--cloud-port", str(serve_cluster.port),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    arrivals = report["meta"]["arrivals"]
    assert arrivals > 0
    assert {r["tier"] for r in report["meta"]["replicas"]} == {"edge", "private", "public"}
    assert list(report["configurations"]) == ["baseline", "router"]
    stored = {run["name"]: run["records"] for run in json.loads((out / "records.json").read_text())}
    for name, summary in report["configurations"].items():
        whole = summary["all"]
        assert whole["sent"] == arrivals == whole["succeeded"] + whole["failed"]
        assert sum(whole["failed_by_code"].values()) == whole["failed"]
        assert set(summary["classes"]) == {"REALTIME", "INTERACTIVE", "BATCH"}
        assert sum(c["sent"] for c in summary["classes"].values()) == arrivals
        for figures in summary["classes"].values():
            assert figures["sent"] == figures["succeeded"] + figures["failed"]
            assert set(figures["ttft_ms"]) == set(figures["latency_ms"]) == {"p50", "p95", "p99"}
        assert whole["succeeded"] > 0, f"{name}: nothing succeeded: {whole['failed_by_code']}"
        assert summary["cost"]["dollars"] > 0 and set(summary["cost"]["tiers"]) == {"edge", "private", "public"}
        assert sum(row["sent"] for row in summary["timeline"]) == arrivals
        ids = [r["request_id"] for r in stored[name]]
        assert len(ids) == len(set(ids)) == arrivals
    assert {r["request_id"] for r in stored["baseline"]} == {r["request_id"] for r in stored["router"]}
    assert report["goal"] is not None
    for plot in report["files"]["plots"]:
        assert (out / plot).stat().st_size > 0
    assert "| router | all |" in (out / "report.md").read_text()
    assert report["meta"]["scaling_signal"]["samples"] and "scaling_signal.png" in report["files"]["plots"]


class _StackOfOneReplica:
    """Stands in for BenchStack: both configurations are one scripted replica."""

    def __init__(self, address: str):
        self.address = address
        self.tier_costs, self.records = {}, []
        self.router_status_url = ""  # no status page to sample the scaling signal from

    def __call__(self, config, say):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def target(self, name: str) -> str:
        return self.address


async def test_the_overload_bench_sends_its_schedule_from_the_processes_asked_for(
    scripted_replicas, tmp_path, monkeypatch
):
    import asyncio

    from hybrid.bench import overload
    from hybrid.bench.workload import WorkloadConfig

    monkeypatch.setattr(overload, "BenchStack", _StackOfOneReplica(scripted_replicas[0].shell.address))
    pools: list[int] = []
    real_run_pool = overload.run_pool

    def run_pool(target, arrivals, processes, *args, **kwargs):
        pools.append(processes)
        return real_run_pool(target, arrivals, processes, *args, **kwargs)

    monkeypatch.setattr(overload, "run_pool", run_pool)
    workload = WorkloadConfig(steady_rps=40, steady_s=0.5, burst_s=0, recovery_s=0, max_new_tokens=(2, 2))
    config = overload.OverloadConfig(
        workload=workload, out=tmp_path, cooldown_s=0, plots=False, progress=False, loadgen_processes=2
    )
    report = await asyncio.to_thread(overload.run_overload, config)

    arrivals = report["meta"]["arrivals"]
    assert arrivals > 5
    for summary in report["configurations"].values():
        assert summary["all"]["sent"] == summary["all"]["succeeded"] == arrivals
    stored = json.loads((tmp_path / "records.json").read_text())
    for run in stored:
        assert len({r["request_id"] for r in run["records"]}) == arrivals
        assert run["generator_cpu_s"] > 0
    assert pools == [2, 2]  # both configurations from two generator processes
    assert len({m.request_id for m in scripted_replicas[0].requests}) == arrivals
