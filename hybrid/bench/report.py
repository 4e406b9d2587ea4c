"""The overload bench's report: figures from the records, as JSON and a markdown table (the PNG plots are
``report_plots``'s).

Per configuration (baseline, router) and per class (REALTIME, INTERACTIVE, BATCH, and all):

* ``sent``, ``succeeded``, ``failed`` and ``failed_by_code``; ``sent == succeeded + failed`` always.
* ``success_rate``: succeeded / sent.
* ``ttft_ms`` and ``latency_ms``: p50, p95 and p99 of time to first token and of total latency, over
  the requests that succeeded (failures are counted in the success rate, not in the latencies).
  Percentiles are nearest-rank: pXX is the smallest value with at least XX% of the values at or
  below it, so it is always a latency that was measured.
* ``tokens_per_s``: completion tokens of the requests that succeeded, per second of the run.
* ``tier_mix``: how many of the requests that succeeded each tier served.

Cost per million tokens (per configuration):

    dollars = sum over tiers of cost_per_hour x replicas x duration of the run (hours)
    cost_per_million_tokens = dollars / completion tokens of the requests that succeeded x 1e6

The convention is *provisioned* cost: a replica is paid for by the hour whether it is busy or idle,
so every tier that was up during the run costs its full price for the run's whole duration, and
tokens of requests that failed (or were cut short) count as wasted, not served. Both configurations
run on the same replicas for the same schedule, so they spend nearly the same dollars; what the
comparison measures is how many useful tokens each gets out of that spend. A usage-based split
(dollars by busy time) would need each replica's busy time, which a client cannot see, and would
hide the price of idle capacity that an operator pays all the same. Completion (generated) tokens
are the unit because they are what the replicas spend their time producing; prompt tokens are
recorded as well. Per tier, the report also gives that tier's dollars, the tokens it served and
its own cost per million tokens. Per class, each tier's dollars are split over the classes by
the tokens each class got from that tier (the dollars of a tier that served nothing are split by
the classes' share of all tokens), so the classes' dollars add up to the configuration's.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from hybrid.bench.loadgen import Record, RunResult
from hybrid.bench.scaling_signal import signal_markdown, summarize_signal
from hybrid.bench.workload import PRIORITIES, WorkloadConfig
from hybrid.pricing import TierCost, provisioned_cost, split_by_tokens

TIERS = ("edge", "private", "public")
ALL = "all"
QUANTILES = (50, 95, 99)
# The overload goal, checked on every report that has both configurations.
GOAL_ROUTER_SUCCESS = 0.999
GOAL_BASELINE_SUCCESS = 0.95
GOAL_REALTIME_TTFT_P99_MS = 250.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    if not values:
        return None
    if not 0 < q <= 100:
        raise ValueError(f"q is {q}: use a percentile in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(0, rank - 1)]


def _quantiles_ms(values_s: list[float]) -> dict[str, float | None]:
    return {f"p{q}": (None if (v := percentile(values_s, q)) is None else round(v * 1000, 3)) for q in QUANTILES}


def summarize_records(records: list[Record], duration_s: float) -> dict:
    """The figures of one group of records (one class of one configuration, or all of it)."""
    ok = [r for r in records if r.ok]
    failed = Counter(r.status for r in records if not r.ok)
    tokens = sum(r.completion_tokens for r in ok)
    mix = Counter(r.tier or "unknown" for r in ok)
    return {
        "sent": len(records),
        "succeeded": len(ok),
        "failed": sum(failed.values()),
        "failed_by_code": dict(sorted(failed.items())),
        "success_rate": len(ok) / len(records) if records else None,
        "ttft_ms": _quantiles_ms([r.ttft_s for r in ok if r.ttft_s is not None]),
        "latency_ms": _quantiles_ms([r.latency_s for r in ok]),
        "completion_tokens": tokens,
        "prompt_tokens": sum(r.prompt_tokens for r in ok),
        "tokens_per_s": tokens / duration_s if duration_s > 0 else None,
        "tier_mix": {tier: mix.get(tier, 0) for tier in sorted(set(TIERS) | set(mix))},
    }


def by_replica(records: list[Record], priority: str = "REALTIME") -> list[dict]:
    """The answered requests of ``priority``, replica by replica: how many, their first tokens, and their pace (ms
    between tokens after the first, p50 over answers of more than one token). Where a class's tail comes from.

    Where the replica timed them, also the first token's wait as the replica saw it, and of that the wait in its
    queue: a first token late at the replica but not queued there waited for the replica's steps; one on time at
    the replica but late at the client waited on the way (the router, the network, an event loop)."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        if record.ok and record.priority == priority:
            groups.setdefault((record.tier, record.replica_id), []).append(record)
    rows = []
    for (tier, replica), group in sorted(groups.items()):
        paces = [
            (r.end_s - r.first_token_s) / (r.completion_tokens - 1)
            for r in group
            if r.first_token_s is not None and r.completion_tokens > 1
        ]
        rows.append(
            {
                "tier": tier,
                "replica": replica,
                "answered": len(group),
                "ttft_ms": _quantiles_ms([r.ttft_s for r in group if r.ttft_s is not None]),
                "replica_ttft_ms": _quantiles_ms(
                    [r.replica_ttft_ms / 1000 for r in group if r.replica_ttft_ms is not None]
                ),
                "replica_queue_ms": _quantiles_ms(
                    [r.replica_queue_ms / 1000 for r in group if r.replica_queue_ms is not None]
                ),
                "token_ms_p50": None if not paces else round(percentile(paces, 50) * 1000, 3),
            }
        )
    return rows


def cost_summary(records: list[Record], duration_s: float, tiers: dict[str, TierCost]) -> dict:
    """Provisioned cost of the run and cost per million completion tokens (see the module's docstring)."""
    tokens_by_tier: Counter[str] = Counter()
    for record in records:
        if record.ok:
            tokens_by_tier[record.tier or "unknown"] += record.completion_tokens
    return provisioned_cost(tokens_by_tier, duration_s, tiers)


def class_costs(records: list[Record], cost: dict) -> dict[str, dict]:
    """Splits the configuration's dollars over the classes by the tokens each got from each tier."""
    ok = [r for r in records if r.ok]
    total_tokens = cost["completion_tokens"]
    idle = sum(t["dollars"] for t in cost["tiers"].values() if not t["completion_tokens"])
    result = {}
    for priority in PRIORITIES:
        mine = [r for r in ok if r.priority == priority]
        tokens = sum(r.completion_tokens for r in mine)
        dollars = split_by_tokens(idle, {priority: tokens, "others": total_tokens - tokens}).get(priority, 0.0)
        for name, tier in cost["tiers"].items():
            served = sum(r.completion_tokens for r in mine if r.tier == name)
            shares = {priority: served, "others": tier["completion_tokens"] - served}
            dollars += split_by_tokens(tier["dollars"], shares).get(priority, 0.0)
        result[priority] = {
            "dollars": dollars,
            "completion_tokens": tokens,
            "cost_per_million_tokens": dollars / tokens * 1e6 if tokens else None,
        }
    return result


def timeline(records: list[Record], duration_s: float, bin_s: float = 1.0) -> list[dict]:
    """Per time bin: requests sent, how many of those succeeded, and tokens / answers completed in the bin."""
    bins = max(1, math.ceil(duration_s / bin_s))
    rows = [{"t_s": i * bin_s, "sent": 0, "succeeded": 0, "completed": 0, "tokens": 0} for i in range(bins)]
    for record in records:
        sent_bin = min(bins - 1, max(0, int(record.sent_s // bin_s)))
        rows[sent_bin]["sent"] += 1
        if record.ok:
            rows[sent_bin]["succeeded"] += 1
            end_bin = min(bins - 1, max(0, int(record.end_s // bin_s)))
            rows[end_bin]["completed"] += 1
            rows[end_bin]["tokens"] += record.completion_tokens
    for row in rows:
        row["success_rate"] = row["succeeded"] / row["sent"] if row["sent"] else None
        row["tokens_per_s"] = row["tokens"] / bin_s
    return rows


def summarize_run(run: RunResult, tiers: dict[str, TierCost], bin_s: float = 1.0) -> dict:
    classes = {p: summarize_records([r for r in run.records if r.priority == p], run.duration_s) for p in PRIORITIES}
    cost = cost_summary(run.records, run.duration_s, tiers)
    for priority, share in class_costs(run.records, cost).items():
        classes[priority]["cost"] = share
    lags = [r.sent_s - r.scheduled_s for r in run.records]
    return {
        "target": run.target,
        "started_at": run.started_at,
        "duration_s": run.duration_s,
        # How late the generator sent requests against the schedule: large values mean the load
        # generator itself could not keep up and the run is not open-loop any more.
        "send_lag_ms": {"p99": _quantiles_ms(lags)["p99"], "max": round(max(lags) * 1000, 3) if lags else None},
        ALL: summarize_records(run.records, run.duration_s),
        "classes": classes,
        "realtime_by_replica": by_replica(run.records),
        "cost": cost,
        "timeline": timeline(run.records, run.duration_s, bin_s),
    }


def goal_check(configurations: dict[str, dict]) -> dict | None:
    """The overload goal, when the report has a baseline and a router."""
    if "baseline" not in configurations or "router" not in configurations:
        return None
    router, baseline = configurations["router"], configurations["baseline"]

    def realtime_p99(summary: dict) -> float | None:
        return summary["classes"]["REALTIME"]["ttft_ms"]["p99"]

    def cost(summary: dict) -> float | None:
        return summary["cost"]["cost_per_million_tokens"]

    router_rt, baseline_rt = realtime_p99(router), realtime_p99(baseline)
    router_ok = (router[ALL]["success_rate"] or 0) >= GOAL_ROUTER_SUCCESS and (
        router_rt is not None and router_rt < GOAL_REALTIME_TTFT_P99_MS
    )
    baseline_short = (baseline[ALL]["success_rate"] or 0) < GOAL_BASELINE_SUCCESS or (
        baseline_rt is None or baseline_rt >= GOAL_REALTIME_TTFT_P99_MS
    )
    cost_ok = cost(router) is not None and (cost(baseline) is None or cost(router) <= cost(baseline))
    return {
        "router_success_rate": router[ALL]["success_rate"],
        "router_realtime_ttft_p99_ms": router_rt,
        "baseline_success_rate": baseline[ALL]["success_rate"],
        "baseline_realtime_ttft_p99_ms": baseline_rt,
        "router_cost_per_million_tokens": cost(router),
        "baseline_cost_per_million_tokens": cost(baseline),
        "router_meets_goal": router_ok,
        "baseline_falls_short": baseline_short,
        "cost_no_higher": cost_ok,
        "met": router_ok and baseline_short and cost_ok,
    }


def build_report(
    runs: list[RunResult],
    tiers: dict[str, TierCost],
    workload: WorkloadConfig | None = None,
    meta: dict | None = None,
    bin_s: float = 1.0,
) -> dict:
    configurations = {run.name: summarize_run(run, tiers, bin_s) for run in runs}
    signal = (meta or {}).get("scaling_signal")
    burst = list(workload.burst_window()) if workload is not None else None
    return {
        "meta": meta or {},
        **(
            {
                "scaling_signal": summarize_signal(
                    signal, configurations["router"]["timeline"], burst, workload.ramp_window()[0] if workload else None
                )
            }
            if signal and "router" in configurations
            else {}
        ),
        "workload": workload.model_dump(mode="json") if workload is not None else None,
        "burst_window_s": list(workload.burst_window()) if workload is not None else None,
        "ramp_window_s": list(workload.ramp_window()) if workload is not None else None,
        "tiers": {name: {"replicas": t.replicas, "cost_per_hour": t.cost_per_hour} for name, t in tiers.items()},
        "configurations": configurations,
        "goal": goal_check(configurations),
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _triple(quantiles: dict[str, float | None]) -> str:
    return " / ".join(_fmt(quantiles.get(f"p{q}")) for q in QUANTILES)


def markdown(report: dict) -> str:
    lines = [
        "| configuration | class | sent | succeeded | failed (codes) | success | TTFT p50 / p95 / p99 ms "
        "| latency p50 / p95 / p99 ms | tokens/s | tier mix (edge / private / public) | $ per M tokens |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    for name, summary in report["configurations"].items():
        for label, group in [*summary["classes"].items(), (ALL, summary[ALL])]:
            codes = ", ".join(f"{code} {n}" for code, n in group["failed_by_code"].items())
            rate = group["success_rate"]
            mix = group["tier_mix"]
            cost = summary["cost"] if label == ALL else group["cost"]
            lines.append(
                f"| {name} | {label} | {group['sent']} | {group['succeeded']} | {group['failed']}"
                f"{f' ({codes})' if codes else ''} | {'–' if rate is None else f'{rate:.1%}'} "
                f"| {_triple(group['ttft_ms'])} | {_triple(group['latency_ms'])} | {_fmt(group['tokens_per_s'], 1)} "
                f"| {mix.get('edge', 0)} / {mix.get('private', 0)} / {mix.get('public', 0)} "
                f"| {_fmt(cost['cost_per_million_tokens'], 2)} |"
            )
    lines += [
        "",
        "| configuration | duration s | completion tokens | cost $ (provisioned) | $ per million tokens |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, summary in report["configurations"].items():
        cost = summary["cost"]
        lines.append(
            f"| {name} | {cost['duration_s']:.1f} | {cost['completion_tokens']} | {cost['dollars']:.4f} "
            f"| {_fmt(cost['cost_per_million_tokens'], 2)} |"
        )
    lines += [
        "",
        "| configuration | REALTIME answered by | tier | answered | TTFT p50 / p95 / p99 ms "
        "| at the replica: TTFT p50 / p95 / p99 ms | of it queued p50 / p95 / p99 ms | ms a token, p50 |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, summary in report["configurations"].items():
        for row in summary.get("realtime_by_replica", []):
            lines.append(
                f"| {name} | {row['replica'] or '–'} | {row['tier'] or '–'} | {row['answered']} "
                f"| {_triple(row['ttft_ms'])} | {_triple(row.get('replica_ttft_ms', {}))} "
                f"| {_triple(row.get('replica_queue_ms', {}))} | {_fmt(row['token_ms_p50'], 1)} |"
            )
    goal = report.get("goal")
    if goal is not None:
        lines += [
            "",
            f"Goal: router success ≥ {GOAL_ROUTER_SUCCESS:.1%} and REALTIME TTFT p99 < "
            f"{GOAL_REALTIME_TTFT_P99_MS:.0f} ms: {'yes' if goal['router_meets_goal'] else 'no'}; baseline below "
            f"{GOAL_BASELINE_SUCCESS:.0%} success or missing that latency: {'yes' if goal['baseline_falls_short'] else 'no'}; "
            f"router cost per million tokens no higher: {'yes' if goal['cost_no_higher'] else 'no'}.",
        ]
    if "scaling_signal" in report:
        lines += ["", signal_markdown(report["scaling_signal"])]
    shots = report["meta"].get("status_page", {}).get("screenshots")
    if shots:
        taken = ", ".join(f"{Path(s['path']).name} at {s['t_s']:.0f} s ({s['moment']})" for s in shots)
        lines += ["", f"The router's status page, screenshot during its run: {taken}."]
    return "\n".join(lines) + "\n"


def write_report(
    runs: list[RunResult],
    tiers: dict[str, TierCost],
    out: Path,
    workload: WorkloadConfig | None = None,
    meta: dict | None = None,
    bin_s: float = 1.0,
    plots: bool = True,
) -> dict:
    """Writes report.json, report.md, records.json and the plots into ``out``; returns the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(runs, tiers, workload, meta, bin_s)
    report["files"] = {"json": "report.json", "markdown": "report.md", "records": "records.json"}
    if plots:
        from hybrid.bench.report_plots import plot

        report["files"]["plots"] = [p.name for p in plot(report, runs, out)]
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    (out / "records.json").write_text(json.dumps([run.to_dict() for run in runs]))
    return report
