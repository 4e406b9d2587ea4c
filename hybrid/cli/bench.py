"""`hybrid bench overload`: the same burst against plain round-robin and against the hybrid router."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from hybrid import constants
from hybrid.bench import defaults
from hybrid.cli.common import console as make_console


def class_mix(text: str) -> dict[str, float]:
    """'REALTIME=0.3,INTERACTIVE=0.5,BATCH=0.2' as a dict."""
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--mix takes CLASS=FRACTION pairs separated by commas, e.g. REALTIME=0.3; got {part!r}")
        mix[name.strip().upper()] = float(value)
    return mix


def cpu_list(text: str) -> frozenset[int]:
    """'12-15' or '0,2,4-6' (the form taskset and cgroups take) as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, sep, last = part.partition("-")
        try:
            low, high = int(first), int(last if sep else first)
        except ValueError:
            raise ValueError(f"--edge-cpus takes CPU numbers and ranges, e.g. 12-15 or 0,2,4-6; got {part!r}") from None
        if low > high:
            raise ValueError(f"--edge-cpus range {part!r} runs backwards: write it low-high")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def workload_fields(args: argparse.Namespace) -> dict:
    """The WorkloadConfig fields: the --workload file's, overridden by the flags given."""
    import yaml

    from hybrid.bench.workload import WorkloadConfig

    fields = yaml.safe_load(Path(args.workload).read_text()) if args.workload else {}
    if args.steady_rps is not None:
        fields["steady_rps"] = args.steady_rps
    if args.burst_x is not None:
        fields["burst_multiplier"] = args.burst_x
    if args.seconds is not None:
        # The whole run in three equal phases: steady, burst, steady again.
        fields.update(steady_s=args.seconds / 3, burst_s=args.seconds / 3, recovery_s=args.seconds / 3)
    for name in ("steady_s", "ramp_s", "burst_s", "recovery_s", "seed"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.mix:
        fields["class_mix"] = class_mix(args.mix)
    if args.max_new_tokens is not None:
        low = min(WorkloadConfig.model_fields["max_new_tokens"].default[0], args.max_new_tokens)
        fields["max_new_tokens"] = (low, args.max_new_tokens)
    return fields


def cmd_bench_overload(args: argparse.Namespace) -> int:
    from hybrid.bench.overload import run_overload
    from hybrid.bench.overload_config import OverloadConfig
    from hybrid.bench.report import markdown
    from hybrid.bench.workload import WorkloadConfig

    console = make_console()
    config = OverloadConfig(
        workload=WorkloadConfig(**workload_fields(args)),
        out=Path(args.out),
        configurations=args.only or ["baseline", "router"],
        artifact=Path(args.artifact) if args.artifact else None,
        edge_agents=args.edge_agents,
        edge_threads=args.edge_threads,
        edge_cpus=cpu_list(args.edge_cpus) if args.edge_cpus else None,
        edge_max_batch_size=args.edge_max_batch_size,
        cloud=not args.no_cloud,
        cloud_port=args.cloud_port,
        cloud_model=args.cloud_model,
        cloud_random_weights=args.cloud_random_weights,
        cloud_max_batch_size=args.cloud_max_batch_size,
        cloud_num_gpus=args.cloud_num_gpus,
        cloud_replicas=args.cloud_replicas,
        cloud_own_ports=args.cloud_own_ports,
        ray_cpus=args.ray_cpus,
        cooldown_s=args.cooldown_s,
        plots=not args.no_plots,
        status_screenshot=Path(args.status_screenshot) if args.status_screenshot else None,
        loadgen_processes=args.loadgen_processes,
        loadgen_channels=args.loadgen_channels,
        router_workers=args.router_workers,
    )
    report = run_overload(config, say=console.log, command=_command_line())
    console.print(markdown(report), markup=False, highlight=False)
    print(config.out / "report.json")
    return 0


def _command_line() -> str:
    """The command line, for the report, when this process is the `hybrid` command (not a test calling main())."""
    program = sys.argv[0]
    if Path(program).name == "hybrid" or program.endswith(os.path.join("hybrid", "cli", "__main__.py")):
        return shlex.join(["hybrid", *sys.argv[1:]])
    return ""


def add_commands(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="load generation and benchmark reports").add_subparsers(
        dest="bench_command", required=True
    )
    overload = bench.add_parser(
        "overload", help="the same burst against plain round-robin and the hybrid router, with a report"
    )
    _add_workload_arguments(overload)
    overload.add_argument("--out", default="bench-overload", help="folder for report.json, report.md and the plots")
    overload.add_argument("--only", action="append", choices=["baseline", "router"], help="run only this configuration")
    _add_stack_arguments(overload)
    overload.add_argument("--cooldown-s", type=float, default=defaults.BENCH_COOLDOWN_S)
    overload.add_argument("--no-plots", action="store_true")
    overload.add_argument(
        "--status-screenshot",
        default="",
        metavar="PATH",
        help="PNG of the router's /status page at the burst's height (and PATH's <stem>-recovered at the end), "
        "taken in headless Chromium through Playwright (pip install playwright; apt-get install chromium)",
    )
    overload.add_argument(
        "--loadgen-processes",
        type=int,
        default=1,
        help="processes the load generator sends from, its arrivals dealt out among them (one offers ~1-2k req/s)",
    )
    overload.add_argument(
        "--loadgen-channels",
        type=int,
        default=1,
        help="gRPC connections per load generator process (a router's workers each take whole connections)",
    )
    overload.add_argument(
        "--router-workers",
        type=int,
        default=1,
        help="router processes on one port, as `hybrid router serve --workers N` (one routes a few hundred req/s)",
    )
    overload.set_defaults(func=cmd_bench_overload)


def _add_workload_arguments(overload: argparse.ArgumentParser) -> None:
    overload.add_argument("--steady-rps", type=float, default=None, help="requests a second outside the burst")
    overload.add_argument(
        "--burst-x", type=float, default=None, help="the burst's rate as a multiple of the steady one"
    )
    overload.add_argument(
        "--seconds", type=float, default=None, help="whole run, split in thirds: steady, burst, steady"
    )
    overload.add_argument("--steady-s", type=float, default=None, help="steady phase before the burst")
    overload.add_argument(
        "--ramp-s",
        type=float,
        default=None,
        help="seconds the rate climbs linearly from the steady rate to the burst's, before the burst's plateau "
        "(0: a step)",
    )
    overload.add_argument("--burst-s", type=float, default=None, help="the burst's plateau, at its full rate")
    overload.add_argument("--recovery-s", type=float, default=None, help="steady phase after the burst")
    overload.add_argument("--mix", default="", help="class mix, e.g. REALTIME=0.3,INTERACTIVE=0.5,BATCH=0.2")
    overload.add_argument("--max-new-tokens", type=int, default=None, help="longest answer asked for")
    overload.add_argument("--seed", type=int, default=None)
    overload.add_argument("--workload", default="", help="YAML file of WorkloadConfig fields; flags override it")


def _add_stack_arguments(overload: argparse.ArgumentParser) -> None:
    overload.add_argument("--artifact", default="", help="edge artifact folder; default: the int8 one, built once")
    overload.add_argument("--edge-agents", type=int, default=1)
    overload.add_argument("--edge-threads", type=int, default=0, help="ONNX Runtime threads per agent; 0: all cores")
    overload.add_argument(
        "--edge-cpus",
        default="",
        help="CPUs the edge agents run on alone, e.g. 12-15; the rest of the bench runs on the others (edge nodes are "
        "other machines). Default: anywhere",
    )
    overload.add_argument(
        "--edge-max-batch-size",
        type=int,
        default=constants.MAX_BATCH_SIZE,
        help="sequences an edge agent decodes at once: its capacity as discovery lists it",
    )
    overload.add_argument(
        "--cloud-model", default=constants.DEFAULT_MODEL, help="the cloud tier's model: a name or a local HF folder"
    )
    overload.add_argument(
        "--cloud-random-weights",
        action="store_true",
        help="random weights of the cloud model's shape (a GPU machine without the weights): real speed, noise answers",
    )
    overload.add_argument(
        "--cloud-max-batch-size",
        type=int,
        default=constants.MAX_BATCH_SIZE,
        help="sequences a cloud replica decodes at once: its capacity as discovery lists it",
    )
    overload.add_argument(
        "--cloud-replicas",
        type=int,
        default=1,
        help="replicas of each cloud application, splitting its GPUs and its price (more processes per GPU)",
    )
    overload.add_argument(
        "--cloud-own-ports",
        action="store_true",
        help="each cloud replica serves on a port of its own, straight from its engine, rather than Serve's",
    )
    overload.add_argument(
        "--cloud-num-gpus", type=float, default=None, help="GPUs per cloud replica; default: the two tiers share them"
    )
    overload.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray cluster started here")
    overload.add_argument("--no-cloud", action="store_true", help="edge agents only (no Ray)")
    overload.add_argument("--cloud-port", type=int, default=0, help="Serve's gRPC proxy port; 0 picks one")
