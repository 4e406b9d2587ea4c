"""The router's scaling signal in the overload bench: sampled from its ``/status.json`` while the router's run
goes, then summed up and plotted beside the arrival rate in the report.

``SignalSampler`` polls the router every ``interval_s`` on a thread of its own (the load generator runs in its
own processes, so the polls take nothing from its clock). The summary says, per tier, when the desired count
first rose above what it was before the burst (its ramp included) and when the rate of requests sent peaked;
and the lead: how long before the burst's plateau began the desired count first reached what the plateau
needs — Little's law (``hybrid.router.scaling.replicas_for``) at the tier's mean arrival rate over the
plateau, with the mean request time and slots a replica the router reported then. A positive lead is a
signal that rose ahead of the burst; ``benchmarks/status_burst.py`` measures its lead the same way.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import TYPE_CHECKING

from hybrid.router.scaling import TIERS, replicas_for

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TIER_COLORS = {"edge": "tab:green", "private": "tab:blue", "public": "tab:purple"}
# Per tier, what each sample keeps of the router's status document.
SAMPLED = ("arrivals_per_s", "forecast_per_s", "desired_replicas", "request_ms", "slots_per_replica")


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
                    **{t["tier"]: {k: t[k] for k in SAMPLED if k in t} for t in document["tiers"]},
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


def first_reached(points: list[tuple[float, int]], since_s: float, need: int) -> float | None:
    """When, at or after ``since_s``, a desired count of (seconds, count) ``points`` first reached ``need``."""
    return next((t for t, count in points if t >= since_s and count >= need), None)


def peak_lead(tier: str, samples: list[dict], ramp_start_s: float, plateau: tuple[float, float]) -> dict:
    """What the burst's plateau needs of ``tier`` (Little's law at the tier's mean arrival rate and request time
    over the plateau) and how long before the plateau's start the desired count first reached it."""
    held = [s[tier] for s in samples if tier in s and plateau[0] <= s["t_s"] < plateau[1]]
    if not held or "request_ms" not in held[0]:
        return {}
    rate = sum(h["arrivals_per_s"] for h in held) / len(held)
    request_s = sum(h["request_ms"] for h in held) / len(held) / 1000
    slots = sum(h["slots_per_replica"] for h in held) / len(held)
    need = replicas_for(rate, request_s, slots) if slots > 0 else 0
    reached = first_reached([(s["t_s"], s[tier]["desired_replicas"]) for s in samples if tier in s], ramp_start_s, need)
    return {
        "plateau_arrivals_per_s": round(rate, 2),
        "plateau_request_ms": round(request_s * 1000, 1),
        "peak_need": need,
        "reached_peak_need_at_s": reached,
        "lead_s": None if reached is None or need == 0 else round(plateau[0] - reached, 2),
    }


def summarize_signal(
    signal: dict, timeline: list[dict], burst_window: list[float] | None, ramp_start_s: float | None = None
) -> dict:
    """Per tier: its desired count before the burst (and its ramp, which starts at ``ramp_start_s``), the most it
    asked, when it first rose above the former, and its lead on the plateau (``peak_lead``); beside when the rate
    of requests sent (the router run's timeline) peaked."""
    samples = signal["samples"]
    peak_row = max(timeline, key=lambda row: row["sent"], default=None)
    burst_start = burst_window[0] if burst_window else 0.0
    rise_from = burst_start if ramp_start_s is None else ramp_start_s
    tiers = {}
    for tier in TIERS:
        before = [s[tier]["desired_replicas"] for s in samples if tier in s and s["t_s"] < rise_from]
        baseline = max(before, default=0)
        rose = next(
            (
                s["t_s"]
                for s in samples
                if tier in s and s["t_s"] >= rise_from and s[tier]["desired_replicas"] > baseline
            ),
            None,
        )
        tiers[tier] = {
            "desired_before_burst": baseline,
            "most_desired": max((s[tier]["desired_replicas"] for s in samples if tier in s), default=0),
            "rose_at_s": rose,
            **(peak_lead(tier, samples, rise_from, (burst_window[0], burst_window[1])) if burst_window else {}),
        }
    return {
        "sent_peaked_at_s": None if peak_row is None else peak_row["t_s"],
        "ramp_start_s": rise_from,
        "plateau_start_s": burst_start,
        "tiers": tiers,
    }


def signal_markdown(summary: dict) -> str:
    """One line per tier: when its desired count rose, beside when the requests sent peaked; then each tier's lead
    on the burst's plateau."""
    peak = summary["sent_peaked_at_s"]
    parts, leads = [], []
    for tier, figures in summary["tiers"].items():
        rose = figures["rose_at_s"]
        when = "did not rise" if rose is None else f"rose at {rose:.1f} s"
        parts.append(f"{tier} {figures['desired_before_burst']} → {figures['most_desired']} ({when})")
        if figures.get("peak_need"):
            leads.append(_lead_phrase(tier, figures))
    peaked = "" if peak is None else f"; requests sent peaked at {peak:.0f} s"
    line = f"Scaling signal (desired replicas, before the burst → most): {', '.join(parts)}{peaked}."
    if leads:
        line += (
            f"\n\nAgainst the burst's plateau (from {summary.get('plateau_start_s', 0):.0f} s; Little's law at each "
            f"tier's mean arrival rate and request time over it): {'; '.join(leads)}."
        )
    return line


def _lead_phrase(tier: str, figures: dict) -> str:
    need = f"{tier} needs {figures['peak_need']} at {figures['plateau_arrivals_per_s']:g}/s"
    reached, lead = figures["reached_peak_need_at_s"], figures["lead_s"]
    if reached is None:
        return f"{need}, which the desired count never reached"
    ahead = f"{lead:.1f} s before the plateau" if lead >= 0 else f"{-lead:.1f} s after the plateau began"
    return f"{need}, reached at {reached:.1f} s, {ahead}"


def shade_burst(ax, report: dict) -> None:
    """The burst's plateau shaded on ``ax``, and its ramp (where it has one) more lightly."""
    ramp, burst = report.get("ramp_window_s"), report.get("burst_window_s")
    if ramp and ramp[1] > ramp[0]:
        ax.axvspan(ramp[0], ramp[1], color="orange", alpha=0.07, label="ramp")
    if burst and burst[1] > burst[0]:
        ax.axvspan(burst[0], burst[1], color="orange", alpha=0.15, label="burst")


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
    for tier, figures in report.get("scaling_signal", {}).get("tiers", {}).items():
        if figures.get("peak_need"):
            counts.axhline(figures["peak_need"], color=TIER_COLORS[tier], ls=":", lw=1, label=f"{tier}: plateau needs")
    for ax in (rates, counts):
        shade_burst(ax, report)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
    rates.set_ylabel("requests / s (router run)")
    counts.set_ylabel("desired replicas")
    counts.set_xlabel("seconds since the run's start")
    return figure
