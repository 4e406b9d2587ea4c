"""The router's scaling signal in the overload bench: sampled from its ``/status.json`` while the router's run
goes, then summed up and plotted beside the arrival rate in the report.

``SignalSampler`` polls the router every ``interval_s`` on a thread of its own (the load generator runs in its
own processes, so the polls take nothing from its clock). The summary says, per tier, when the desired count
first rose above what it was before the burst and when the rate of requests sent peaked: a signal that rises
ahead of the burst rises before the peak.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import TYPE_CHECKING

from hybrid.router.scaling import TIERS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TIER_COLORS = {"edge": "tab:green", "private": "tab:blue", "public": "tab:purple"}


class SignalSampler:
    """``with SignalSampler(url):`` records each tier's arrivals, forecast and desired count every ``interval_s``."""

    def __init__(self, status_url: str, interval_s: float = 0.5):
        self.status_url = status_url
        self.interval_s = interval_s
        self.samples: list[dict] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="signal-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with urllib.request.urlopen(self.status_url, timeout=2) as answer:
                    document = json.loads(answer.read())
            except (OSError, ValueError):
                self.failures += 1  # a busy router may miss a poll; the others still draw the line
                continue
            self.samples.append(
                {
                    "at": document["generated_at"],
                    **{
                        t["tier"]: {k: t[k] for k in ("arrivals_per_s", "forecast_per_s", "desired_replicas")}
                        for t in document["tiers"]
                    },
                }
            )

    def __enter__(self) -> SignalSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def record(self, started_at: float) -> dict:
        """The samples on the run's clock (seconds since ``started_at``, wall clock), for the report's meta."""
        return {
            "interval_s": self.interval_s,
            "failed_polls": self.failures,
            "samples": [{**s, "t_s": round(s["at"] - started_at, 3)} for s in self.samples],
        }


def summarize_signal(signal: dict, timeline: list[dict], burst_window: list[float] | None) -> dict:
    """Per tier: its desired count before the burst, the most it asked, and when it first rose above the former;
    beside when the rate of requests sent (the router run's timeline) peaked."""
    samples = signal["samples"]
    peak_row = max(timeline, key=lambda row: row["sent"], default=None)
    burst_start = burst_window[0] if burst_window else 0.0
    tiers = {}
    for tier in TIERS:
        before = [s[tier]["desired_replicas"] for s in samples if tier in s and s["t_s"] < burst_start]
        baseline = max(before, default=0)
        rose = next(
            (
                s["t_s"]
                for s in samples
                if tier in s and s["t_s"] >= burst_start and s[tier]["desired_replicas"] > baseline
            ),
            None,
        )
        tiers[tier] = {
            "desired_before_burst": baseline,
            "most_desired": max((s[tier]["desired_replicas"] for s in samples if tier in s), default=0),
            "rose_at_s": rose,
        }
    return {"sent_peaked_at_s": None if peak_row is None else peak_row["t_s"], "tiers": tiers}


def signal_markdown(summary: dict) -> str:
    """One line per tier: when its desired count rose, beside when the requests sent peaked."""
    peak = summary["sent_peaked_at_s"]
    parts = []
    for tier, figures in summary["tiers"].items():
        rose = figures["rose_at_s"]
        when = "did not rise" if rose is None else f"rose at {rose:.1f} s"
        parts.append(f"{tier} {figures['desired_before_burst']} → {figures['most_desired']} ({when})")
    peaked = "" if peak is None else f"; requests sent peaked at {peak:.0f} s"
    return f"Scaling signal (desired replicas, before the burst → most): {', '.join(parts)}{peaked}."


def signal_figure(report: dict, signal: dict) -> Figure:
    """The router run's arrival rate (requests sent a second) over each tier's desired replica count."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6), layout="constrained")
    rates, counts = figure.subplots(2, 1, sharex=True)
    rows = report["configurations"]["router"]["timeline"]
    rates.plot([r["t_s"] for r in rows], [r["sent"] for r in rows], color="black", drawstyle="steps-post", label="sent")
    samples = signal["samples"]
    times = [s["t_s"] for s in samples]
    for tier in TIERS:
        if not samples or tier not in samples[0]:
            continue
        color = TIER_COLORS[tier]
        rates.plot(times, [s[tier]["arrivals_per_s"] for s in samples], color=color, label=f"{tier}: arrivals")
        rates.plot(times, [s[tier]["forecast_per_s"] for s in samples], color=color, ls="--", lw=1, label="forecast")
        counts.step(times, [s[tier]["desired_replicas"] for s in samples], where="post", color=color, label=tier)
    burst = report.get("burst_window_s")
    for ax in (rates, counts):
        if burst and burst[1] > burst[0]:
            ax.axvspan(burst[0], burst[1], color="orange", alpha=0.15, label="burst")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
    rates.set_ylabel("requests / s (router run)")
    counts.set_ylabel("desired replicas")
    counts.set_xlabel("seconds since the run's start")
    return figure
