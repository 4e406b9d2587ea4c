"""`hybrid bench overload`: the same burst against plain round-robin and against the hybrid router.

On this machine it starts:

* the edge agent(s), on the int8 artifact (built once and cached, as `hybrid up` does);
* the cloud tier's private and public Serve applications on local Ray, behind one Serve gRPC
  proxy and each replica on a port of its own (or on the cluster already running in this process,
  e.g. a test session's); where Ray sees GPUs the two applications share them;
* one WAN proxy (``hybrid.bench.wan``) in front of each replica, with that tier's round trip;
* the router, on static discovery listing the replicas at their WAN proxies' addresses (the cloud
  replicas on their own ports);
* the baseline (``hybrid.bench.baseline``): round-robin over the edge agents and the cloud tiers'
  Serve proxies, each behind the same WAN proxies: the way in without the router.

The tiers start through their plugins (``hybrid.tiers``, ``start_bench``); ``BenchStack``
(``hybrid.bench.stack``) is the ``BenchHost`` they get: the config, processes of their own, teardown and the
cost ledger. ``OverloadConfig`` (``hybrid.bench.overload_config``) says what runs.

Every edge agent, the WAN proxies, the router, the baseline and the load generator run in
processes of their own (``hybrid.bench.processes``), so none waits on another's GIL. Then it sends
one schedule (``hybrid.bench.workload``) open-loop to each configuration in turn, with a pause
between them, and writes the report (``hybrid.bench.report``) into ``out``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time

from hybrid.bench.loadgen import RunResult
from hybrid.bench.loadgen_pool import PoolProgress, run_pool
from hybrid.bench.overload_config import OverloadConfig
from hybrid.bench.processes import call_in_process
from hybrid.bench.report import write_report
from hybrid.bench.scaling_signal import SignalSampler
from hybrid.bench.stack import BenchStack
from hybrid.bench.status_shots import StatusScreenshots, check_browser
from hybrid.bench.workload import Arrival, schedule

log = logging.getLogger("hybrid.bench")


def run_with_progress(
    target: str, arrivals: list[Arrival], name: str, chat: bool, show: bool, processes: int = 1, channels: int = 1
) -> RunResult:
    """One configuration's run from ``processes`` generator processes (``hybrid.bench.loadgen_pool``) of ``channels``
    connections each, with progress bars on stderr when ``show``."""
    if not show:
        return run_pool(target, arrivals, processes, name, chat, channels)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        sent = progress.add_task(f"{name}: sent", total=len(arrivals), note="")
        done = progress.add_task(f"{name}: answered", total=len(arrivals), note="")

        def on_progress(counts: PoolProgress) -> None:
            progress.update(sent, completed=counts.sent)
            progress.update(done, completed=counts.done, note=f"failed {counts.failed}")

        return run_pool(target, arrivals, processes, name, chat, channels, on_progress=on_progress)


def _run_one(
    config: OverloadConfig, stack: BenchStack, name: str, arrivals: list[Arrival], observed: dict
) -> RunResult:
    """One configuration's run; the router's also samples its scaling signal and screenshots its status page, into
    ``observed`` (the report's meta)."""
    run = (
        stack.target(name),
        arrivals,
        name,
        config.chat,
        config.progress,
        config.loadgen_processes,
        config.loadgen_channels,
    )
    watching = name == "router" and stack.router_status_url
    sampler = SignalSampler(stack.router_status_url) if watching else None
    shots = (
        StatusScreenshots(stack.router_page_url, config.status_moments())
        if watching and config.status_moments()
        else None
    )
    with sampler or contextlib.nullcontext(), shots or contextlib.nullcontext():
        # One generator gets a process of its own; a pool's generators have theirs, and this one only merges.
        result = call_in_process(run_with_progress, *run) if config.loadgen_processes == 1 else run_with_progress(*run)
    if sampler is not None:
        observed["scaling_signal"] = sampler.record(result.started_at)
    if shots is not None:
        observed["status_page"] = shots.record(result.started_at)
    return result


def run_overload(config: OverloadConfig, say=None, command: str = "") -> dict:
    """Starts the stack, runs the schedule against each configuration, writes and returns the report.

    ``command`` is recorded in the report as the command line that produced it."""
    say = say or (lambda message: log.info("%s", message))
    if config.plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            # Said before anything starts, not after a long run.
            raise ValueError(
                "the plots need matplotlib: pip install 'hybrid-inference[bench]' (or matplotlib), or pass --no-plots"
            ) from None
    if config.status_screenshot is not None:
        check_browser()  # said before anything starts, as above
    arrivals = schedule(config.workload)
    ramp = f", a {config.workload.ramp_s:g} s ramp" if config.workload.ramp_s else ""
    say(
        f"workload: {len(arrivals)} requests over {config.workload.duration_s:.0f} s "
        f"({config.workload.steady_rps:g}/s steady, x{config.workload.burst_multiplier:g} burst{ramp})"
    )
    runs: list[RunResult] = []
    observed: dict = {}
    started = time.time()
    with BenchStack(config, say) as stack:
        for index, name in enumerate(config.configurations):
            if index and config.cooldown_s:
                say(f"cooling down {config.cooldown_s:.0f} s")
                time.sleep(config.cooldown_s)
            say(f"running the schedule against the {name} at {stack.target(name)}")
            runs.append(_run_one(config, stack, name, arrivals, observed))
        tiers = dict(stack.tier_costs)
        replicas = [r.model_dump() for r in stack.records]
    meta = {
        "command": command,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "started_at": started,
        "replicas": replicas,
        "rtt_ms": config.rtt_ms,
        "arrivals": len(arrivals),
        **observed,
    }
    page = observed.get("status_page", {})
    if page.get("error"):
        say(f"the status page's screenshots failed: {page['error']}")
    report = write_report(runs, tiers, config.out, config.workload, meta, plots=config.plots)
    say(f"report written to {config.out}/report.json, report.md and the plots")
    return report
