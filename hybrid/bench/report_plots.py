"""The overload bench report's PNG plots (matplotlib, imported only when plotting): time to first token and latency
CDFs per class, success and tokens over the run, the tier mix, and the router's scaling signal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.bench.loadgen import RunResult
from hybrid.bench.report import ALL, GOAL_REALTIME_TTFT_P99_MS, TIERS
from hybrid.bench.scaling_signal import shade_burst, signal_figure
from hybrid.bench.workload import PRIORITIES

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _cdf(values: list[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    return ordered, [(i + 1) / len(ordered) for i in range(len(ordered))]


def _latency_cdf_figure(runs: list[RunResult], colors: dict[str, str]) -> Figure:
    """Per class, the CDF of time to first token and of total latency of the requests that succeeded."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5 * len(PRIORITIES), 4), layout="constrained")
    axes = figure.subplots(1, len(PRIORITIES), squeeze=False)[0]
    for ax, priority in zip(axes, PRIORITIES):
        for run in runs:
            ok = [r for r in run.records if r.ok and r.priority == priority]
            if not ok:
                continue
            ttft = [r.ttft_s * 1000 for r in ok if r.ttft_s is not None]
            if ttft:
                ax.plot(*_cdf(ttft), color=colors[run.name], label=f"{run.name} TTFT")
            ax.plot(*_cdf([r.latency_s * 1000 for r in ok]), color=colors[run.name], ls="--", label=f"{run.name} total")
        if priority == "REALTIME":
            ax.axvline(GOAL_REALTIME_TTFT_P99_MS, color="grey", ls=":", label="250 ms")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.01)
        ax.set_title(f"{priority} (succeeded requests)")
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction ≤ x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return figure


def _timeline_figure(report: dict, colors: dict[str, str]) -> Figure:
    """Success rate and completion tokens/s over the run, the burst shaded."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6), layout="constrained")
    success_ax, tokens_ax = figure.subplots(2, 1, sharex=True)
    for name, summary in report["configurations"].items():
        rows = summary["timeline"]
        times = [row["t_s"] for row in rows]
        success_ax.plot(
            times,
            [row["success_rate"] for row in rows],
            color=colors[name],
            marker=".",
            label=name,
            drawstyle="steps-post",
        )
        tokens_ax.plot(
            times, [row["tokens_per_s"] for row in rows], color=colors[name], label=name, drawstyle="steps-post"
        )
    for ax in (success_ax, tokens_ax):
        shade_burst(ax, report)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    success_ax.set_ylabel("success of requests sent")
    success_ax.set_ylim(-0.02, 1.02)
    tokens_ax.set_ylabel("completion tokens / s")
    tokens_ax.set_xlabel("seconds since the run's start")
    return figure


def _tier_mix_figure(report: dict) -> Figure:
    """Per class and configuration, the share of requests each tier served, failures on top."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5), layout="constrained")
    ax = figure.subplots()
    groups = [*PRIORITIES, ALL]
    names = list(report["configurations"])
    width = 0.8 / max(1, len(names))
    tier_colors = {"edge": "tab:green", "private": "tab:blue", "public": "tab:purple", "failed": "tab:grey"}
    for index, name in enumerate(names):
        summary = report["configurations"][name]
        positions = [g + index * width for g in range(len(groups))]
        bottoms = [0.0] * len(groups)
        for part in (*TIERS, "failed"):
            heights = []
            for group in groups:
                figures = summary[ALL] if group == ALL else summary["classes"][group]
                count = figures["failed"] if part == "failed" else figures["tier_mix"].get(part, 0)
                heights.append(count / figures["sent"] if figures["sent"] else 0.0)
            ax.bar(
                positions,
                heights,
                width,
                bottom=bottoms,
                color=tier_colors[part],
                edgecolor="white",
                label=part if index == 0 else None,
            )
            bottoms = [b + h for b, h in zip(bottoms, heights)]
        for x in positions:
            ax.text(x, 1.01, name, ha="center", va="bottom", fontsize="x-small", rotation=90)
    ax.set_xticks([g + (len(names) - 1) * width / 2 for g in range(len(groups))], groups)
    ax.set_ylabel("fraction of requests sent")
    ax.set_ylim(0, 1.25)
    ax.set_title("Tier mix: who served each class (grey: failed)")
    ax.legend(fontsize="small", ncol=4, loc="upper right")
    return figure


def plot(report: dict, runs: list[RunResult], out: Path) -> list[Path]:
    """latency_cdf.png, timeline.png, tier_mix.png (and scaling_signal.png where the router's signal was sampled)
    in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    colors = {name: f"C{i}" for i, name in enumerate(report["configurations"])}
    latency_cdf, timeline, tier_mix = out / "latency_cdf.png", out / "timeline.png", out / "tier_mix.png"
    _latency_cdf_figure(runs, colors).savefig(latency_cdf, dpi=110)
    _timeline_figure(report, colors).savefig(timeline, dpi=110)
    _tier_mix_figure(report).savefig(tier_mix, dpi=110)
    plots = [latency_cdf, timeline, tier_mix]
    if "scaling_signal" in report:
        signal_figure(report, report["meta"]["scaling_signal"]).savefig(out / "scaling_signal.png", dpi=110)
        plots.append(out / "scaling_signal.png")
    return plots
