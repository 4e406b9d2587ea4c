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

The tiers start through their plugins (``hybrid.tiers``, ``start_bench``); ``BenchStack`` is the
``BenchHost`` they get: the config, processes of their own, teardown and the cost ledger.

Every edge agent, the WAN proxies, the router, the baseline and the load generator run in
processes of their own (``hybrid.bench.processes``), so none waits on another's GIL. Then it sends
one schedule (``hybrid.bench.workload``) open-loop to each configuration in turn, with a pause
between them, and writes the report (``hybrid.bench.report``) into ``out``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from hybrid import constants, tiers
from hybrid.bench import defaults
from hybrid.bench.loadgen import RunResult
from hybrid.bench.loadgen_pool import PoolProgress, run_pool
from hybrid.bench.processes import ServerProcess, call_in_process
from hybrid.bench.report import TierCost, write_report
from hybrid.bench.scaling_signal import SignalSampler
from hybrid.bench.status_shots import Moment, StatusScreenshots, check_browser
from hybrid.bench.workload import Arrival, WorkloadConfig, schedule
from hybrid.discovery import ReplicaRecord
from hybrid.discovery.records import prefer_direct_replicas
from hybrid.serving.ports import free_port

log = logging.getLogger("hybrid.bench")

CONFIGURATIONS = ("baseline", "router")


class OverloadConfig(BaseModel):
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    out: Path = Field(default=Path("bench-overload"), description="Folder the report is written to.")
    configurations: list[Literal["baseline", "router"]] = Field(
        default_factory=lambda: list(CONFIGURATIONS), description="Which configurations run, in this order."
    )
    artifact: Path | None = Field(default=None, description="Edge artifact; default: the int8 one, built once.")
    edge_agents: int = Field(default=1, ge=1, le=8, description="Edge agents, each behind its own WAN proxy.")
    edge_max_batch_size: int = Field(default=constants.MAX_BATCH_SIZE, ge=1, le=256, description="Batch per agent.")
    edge_threads: int = Field(default=0, ge=0, description="ONNX Runtime threads per edge agent; 0: physical cores.")
    edge_cpus: frozenset[int] | None = Field(
        default=None,
        description="CPUs the edge agents run on, and nothing else: every other part of the bench runs on the "
        "remaining CPUs. Edge nodes are other machines; on one machine their busy threads would otherwise take "
        "the cores the cloud replicas' host work needs. None: every part may run anywhere.",
    )
    cloud: bool = Field(default=True, description="Start the cloud tier (private and public) on local Ray.")
    cloud_port: int = Field(default=0, ge=0, le=65535, description="Serve's gRPC proxy port; 0 picks a free one.")
    cloud_max_batch_size: int = Field(default=constants.MAX_BATCH_SIZE, ge=1, le=1024, description="Batch per replica.")
    cloud_model: str = Field(
        default=constants.DEFAULT_MODEL, description="The cloud tier's model: a known name or a local HF folder."
    )
    cloud_random_weights: bool = Field(
        default=False,
        description="Random weights of the model's shape (for GPU machines without the weights); answers are noise, "
        "speed is the real model's.",
    )
    cloud_replicas: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Replicas of each cloud application. They split the application's GPUs and its price: more "
        "processes driving one GPU, at the same cost per hour.",
    )
    cloud_own_ports: bool = Field(
        default=False,
        description="Each cloud replica serves on a gRPC port it opens itself, straight from its engine, and the "
        "router reaches it there; else on the port Serve's direct ingress gives it. The baseline goes through "
        "Serve's proxy either way.",
    )
    cloud_num_gpus: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="GPUs per cloud replica; None: the private and public applications share the cluster's GPUs "
        "(half a GPU each on a one-GPU machine), or run on CPU where Ray sees none.",
    )
    ray_cpus: int | None = Field(default=None, ge=1, description="CPUs of the local Ray cluster started here.")
    rtt_ms: dict[str, float] = Field(
        default_factory=lambda: {
            "edge": defaults.BENCH_EDGE_RTT_MS,
            "private": defaults.BENCH_PRIVATE_RTT_MS,
            "public": defaults.BENCH_PUBLIC_RTT_MS,
        },
        description="Emulated round trip to each tier, ms.",
    )
    cost_per_hour: dict[str, float] = Field(
        default_factory=lambda: {
            "edge": defaults.BENCH_EDGE_COST_PER_HOUR,
            "private": defaults.BENCH_PRIVATE_COST_PER_HOUR,
            "public": defaults.BENCH_PUBLIC_COST_PER_HOUR,
        },
        description="Price of one replica of each tier per hour, dollars.",
    )
    cooldown_s: float = Field(default=defaults.BENCH_COOLDOWN_S, ge=0, description="Pause between configurations.")
    chat: bool = Field(default=True, description="Send prompts as a chat message (else as raw prompts).")
    plots: bool = Field(default=True, description="Write the PNG plots (needs matplotlib).")
    status_screenshot: Path | None = Field(
        default=None,
        description="Where to save a screenshot of the router's status page while the burst is at its height "
        "(another, named <stem>-recovered, at the run's end); needs Playwright and Chromium. None: no screenshot.",
    )
    progress: bool = Field(default=True, description="Show progress bars while the schedule runs.")
    loadgen_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes the load generator sends from; one Python process offers at most one or two "
        "thousand requests a second.",
    )
    loadgen_channels: int = Field(
        default=1,
        ge=1,
        le=64,
        description="gRPC channels, each its own connection, per load generator process. A router of several "
        "workers gets each connection whole: give it several per worker, or one worker takes all.",
    )
    router_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Router processes on one port, as `hybrid router serve --workers N` runs them: one Python "
        "process routes a few hundred streaming requests a second.",
    )

    @field_validator("edge_cpus")
    @classmethod
    def _cpus_of_this_machine(cls, cpus: frozenset[int] | None) -> frozenset[int] | None:
        if cpus is None:
            return None
        usable = os.sched_getaffinity(0)
        if not cpus or not cpus <= usable:
            raise ValueError(f"edge_cpus {sorted(cpus)}: name CPUs this process may use, {sorted(usable)}")
        if usable <= cpus:
            raise ValueError(f"edge_cpus {sorted(cpus)} takes every CPU: leave some for the rest of the bench")
        return cpus

    @field_validator("rtt_ms", "cost_per_hour")
    @classmethod
    def _per_tier(cls, values: dict[str, float]) -> dict[str, float]:
        tiers = ("edge", "private", "public")
        unknown = sorted(set(values) - set(tiers))
        if unknown:
            raise ValueError(f"unknown tier(s) {', '.join(unknown)}: use edge, private and public")
        missing = [t for t in tiers if t not in values]
        if missing:
            raise ValueError(f"give a value for every tier; missing: {', '.join(missing)}")
        if any(v < 0 for v in values.values()):
            raise ValueError("values must be 0 or more")
        return values

    @field_validator("configurations")
    @classmethod
    def _some(cls, names: list[str]) -> list[str]:
        if not names or len(set(names)) != len(names):
            raise ValueError("name each configuration once: baseline, router or both")
        return names

    @model_validator(mode="after")
    def _screenshot_needs_the_router(self) -> OverloadConfig:
        if self.status_screenshot is not None and "router" not in self.configurations:
            raise ValueError(
                "the status page is the router's: run the router configuration or leave out the screenshot"
            )
        return self

    def status_moments(self) -> list[Moment]:
        """When the status page is screenshot: three quarters into the burst's plateau (its height, the page's
        minutes full of it), and once the run has ended (after recovery)."""
        if self.status_screenshot is None:
            return []
        path = self.status_screenshot
        start, end = self.workload.burst_window()
        recovered = path.with_name(f"{path.stem}-recovered{path.suffix or '.png'}")
        return [Moment("burst", start + 0.75 * (end - start), path), Moment("recovered", None, recovered)]


class BenchStack:
    """Everything the bench sends to, started on this machine; ``stop`` tears down what ``start`` started."""

    def __init__(self, config: OverloadConfig, say=None):
        self.config = config
        self.say = say or (lambda message: log.info("%s", message))
        self.records: list[ReplicaRecord] = []  # as the router and the baseline see them: at the WAN proxies
        self.tier_costs: dict[str, TierCost] = {}
        self.router_address = ""
        self.router_status_url = ""  # the router's /status.json, once it serves
        self.router_page_url = ""  # its /status page
        self.baseline_address = ""
        self._stoppers: list = []
        self._folder = Path(tempfile.mkdtemp(prefix="hybrid-bench-"))

    def __enter__(self) -> BenchStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        from hybrid.bench.wan import DelayProxyGroup, WanConfig, WanRoute

        config = self.config
        if config.edge_cpus:
            # Before Ray or any child starts: each inherits this process's CPUs; the edge agents get theirs.
            everything = os.sched_getaffinity(0)
            os.sched_setaffinity(0, everything - config.edge_cpus)
            self.on_stop(lambda: os.sched_setaffinity(0, everything))
        # The tiers start through their plugins; both are checked before either starts.
        needed = [tiers.require("edge")]
        if config.cloud:
            needed.append(tiers.require("cloud", alternative="pass --no-cloud for edge only"))
        self.on_stop(lambda: shutil.rmtree(self._folder, ignore_errors=True))
        direct: list[ReplicaRecord] = []
        for plugin in needed:
            direct += plugin.start_bench(self)
        routes = [WanRoute(target=f"{r.address}:{r.port}", rtt_ms=config.rtt_ms[r.tier], name=r.id) for r in direct]
        wan = self.in_process(DelayProxyGroup, WanConfig(routes=routes), "WAN proxies")
        for record, address in zip(direct, wan.address, strict=True):
            host, port = address.rsplit(":", 1)
            self.records.append(record.model_copy(update={"address": host, "port": int(port)}))
        self.say(
            "WAN proxies: "
            + ", ".join(f"{r.id} {r.tier} {config.rtt_ms[r.tier]:.0f} ms at {r.address}:{r.port}" for r in self.records)
        )
        self._warm_up()
        if "router" in config.configurations:
            self._start_router()
        if "baseline" in config.configurations:
            from hybrid.bench.baseline import BaselineConfig, RoundRobinProxy

            # Today's way in: the cloud tiers through Serve's proxies, never their replicas' own ports.
            proxied = [r for r in self.records if not r.serve_replica]
            baseline = self.in_process(RoundRobinProxy, BaselineConfig(port=0, replicas=proxied), "baseline")
            self.baseline_address = baseline.address

    # What the tiers' plugins use to start their replicas (hybrid.tiers.BenchHost).

    def in_process(
        self, server_class: type, server_config, name: str, cpus: frozenset[int] | None = None
    ) -> ServerProcess:
        process = ServerProcess(server_class, server_config, name, cpus=cpus)
        self.on_stop(process.stop)
        return process

    def on_stop(self, stopper) -> None:
        self._stoppers.append(stopper)

    def provisioned(self, tier: str, replicas: int, cost_per_hour: float | None = None) -> None:
        price = self.config.cost_per_hour[tier] if cost_per_hour is None else cost_per_hour
        self.tier_costs[tier] = TierCost(replicas, price)

    def _start_router(self) -> None:
        from hybrid.discovery import StaticFileRegistry
        from hybrid.router.server import Router, RouterConfig

        discovery = self._folder / "discovery.yaml"
        registry = StaticFileRegistry(discovery)
        for record in self.records:
            registry.register(record)
        # A port fixed here, as the router runs in a child that hands back only its gRPC address: the scaling
        # signal is sampled from its status page during its run.
        http_port = free_port()
        workers = self.config.router_workers
        router_config = RouterConfig(
            port=0 if workers == 1 else free_port(),
            discovery=f"static:{discovery}",
            http_port=http_port,
            workers=workers,
        )
        if workers == 1:
            self.router_address = self.in_process(Router, router_config, "router").address
        else:
            router = ServerProcess.router_workers(router_config, f"router ({workers} workers)")
            self.on_stop(router.stop)
            self.router_address = router.address
        self.router_status_url = f"http://{constants.DEFAULT_HOST}:{http_port}/status.json"
        self.router_page_url = f"http://{constants.DEFAULT_HOST}:{http_port}/status"
        time.sleep(3 * router_config.poll_interval_s)  # a few load polls: RTTs measured through the proxies

    def _warm_up(self) -> None:
        """Answers from every replica (through its proxy) before anything is measured.

        A GPU replica captures one CUDA graph per batch size and length bucket the first time it meets
        them; waves of 1, 2, 4 ... up to its capacity of the longest requests the workload sends make
        it capture them now, not during the first configuration's run."""
        from hybrid.client import AsyncHybridClient

        workload = self.config.workload
        longest = " ".join(["word"] * workload.prompt_words[1])

        async def one(client: AsyncHybridClient, content: str, tokens: int) -> None:
            await client.complete(messages=[{"role": "user", "content": content}], max_new_tokens=tokens)

        async def warm(record: ReplicaRecord) -> None:
            async with AsyncHybridClient(
                f"{record.address}:{record.port}", timeout_s=300, application=record.application or None
            ) as client:
                await one(client, "Say hi.", 2)
                if record.tier == "edge" or record.precision == "fp32":
                    return  # no graphs to capture on a CPU
                wave = 1
                while wave <= record.capacity:
                    await asyncio.gather(*(one(client, longest, workload.max_new_tokens[1]) for _ in range(wave)))
                    wave *= 2

        async def all_of_them() -> None:
            await asyncio.gather(*(warm(r) for r in prefer_direct_replicas(self.records)))

        self.say("warming up every replica")
        asyncio.run(all_of_them())

    def target(self, name: str) -> str:
        return self.router_address if name == "router" else self.baseline_address

    def stop(self) -> None:
        while self._stoppers:
            stopper = self._stoppers.pop()
            try:
                stopper()
            except Exception as error:  # tear down the rest all the same
                log.warning("stopping a part of the bench stack failed: %s", error)


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
