"""What `hybrid bench overload` runs: the stack's parts and sizes, the workload, and where the report goes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from hybrid import constants
from hybrid.bench import defaults
from hybrid.bench.status_shots import Moment
from hybrid.bench.workload import WorkloadConfig

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
