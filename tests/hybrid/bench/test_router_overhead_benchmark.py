"""benchmarks/router_overhead.py: its figures from records, and its instant replica in several processes on one port."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid.bench.loadgen import OK, Record, RunResult
from hybrid.bench.loadgen_pool import run_pool

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "router_overhead.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("router_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(index: int, scheduled_s: float, sent_s: float, latency_s: float, status: str = OK) -> Record:
    return Record(f"r{index}", "REALTIME", "steady", "k", scheduled_s, sent_s, end_s=sent_s + latency_s, status=status)


def test_a_generator_that_falls_behind_shows_in_its_send_rate_and_lag(bench):
    on_time = RunResult("direct", "t", [record(i, i / 10, i / 10, 0.002) for i in range(10)], generator_cpu_s=0.01)
    # The second run's sends slip: the last of its ten goes out 1 s after a 1 s schedule.
    late = RunResult("direct", "t", [record(i, i / 10, 2 * i / 9, 0.004) for i in range(10)], generator_cpu_s=0.03)
    late.records[3].status = "UNAVAILABLE"
    figures = bench.summarize([on_time, late], offered=20, seconds_per_run=1.0)
    assert figures["offered_per_s"] == 10
    assert figures["sent_per_s"] == pytest.approx(20 / 3)
    assert figures["failed"] == 1 and figures["failed_pct"] == 5 and figures["failed_by_status"] == {"UNAVAILABLE": 1}
    assert figures["generator_lag_max_ms"] == pytest.approx(1100)
    assert figures["generator_lag_p99_ms"] == pytest.approx(1100)
    assert figures["p50_ms"] in (pytest.approx(2), pytest.approx(4))
    assert figures["generator_cpu_ms_per_request"] == pytest.approx(2)
    figures["replica_cpu_ms_per_request"] = 0.5
    row = {"direct": figures, "routed": figures, "added_p50_ms": 0, "added_p99_ms": 0, "router_cpu_ms_per_request": 1}
    line = bench.table({"10": row}).splitlines()[-1]
    assert line.startswith("| 10 | 7 / 7 | 1 = 5.00% (1) |") and line.endswith("| 2.000 / 2.000 | 0.500 / 0.500 |")


def test_instant_replica_processes_share_one_port(bench):
    port = bench.free_port()
    replicas = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "--instant-replica", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for replica in replicas:
            bench.wait_ready(replica, "ready on")  # the second binds the port too: SO_REUSEPORT
        result = run_pool(f"127.0.0.1:{port}", bench.arrivals_at(200, 0.2, seed=1), 1, chat=False, channels=4)
        assert result.records and all(r.ok for r in result.records)
        assert all(r.completion_tokens == 1 for r in result.records)
    finally:
        for replica in replicas:
            replica.terminate()
            replica.wait(10)
