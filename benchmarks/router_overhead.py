"""What the router adds to a request's latency, against calling the replica directly.

The replica here answers at once (one final chunk, no model), so the figures are the router's own
cost: parsing, the routing decision, the second gRPC hop and proxying the stream. It is a real
hybrid.v1.Inference server on loopback with the same handler plumbing as the edge agent; the model
is left out because no model answers thousands of requests a second.

The processes: the replica (``--replica-processes R`` of them on one port, SO_REUSEPORT spreading the
connections), the router (`hybrid router serve`, static discovery; ``--router-workers N`` is passed on as
``--workers N`` where N > 1) and the load generator (``hybrid.bench.loadgen_pool``: ``--loadgen-processes
P``, each with ``--loadgen-channels`` connections), which sends open-loop (Poisson arrivals at the
given rate, whether or not answers have come back) alternately straight to the replica and through the
router. One Python generator process offers at most one or two thousand requests a second; past that
use several, and read the generator's lag (scheduled to sent, p99) to see whether it kept up.

Per rate it reports what was offered and what was sent, failures, latency (sent to final chunk)
direct and routed and the difference, the router's CPU time per routed request (its process and all
its children, from /proc), and the CPU per request of the generator and of the replica, so a reader
sees which of them bounded the run.

    python benchmarks/router_overhead.py --rates 1000,2500,5000 --seconds 10 --loadgen-processes 6 \\
        --replica-processes 4 --router-workers 4 --out router_overhead.json

``--tracing [SAMPLE]`` runs the router with tracing on, every request sampled (or that share), its spans
exported over OTLP/gRPC to a collector stand-in here that takes and drops them; compare its router CPU per request with a run
without. ``--request-log`` has the router write its request log (to /dev/null) for the same comparison.

With ``--tls`` it runs two stacks side by side in the same run, one plaintext and one with mutual TLS on every
hop (certificates made at start with `hybrid certs`' code), measures each rate on both in turn, and reports
what TLS adds to the router's CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from router_overhead_servers import (  # noqa: E402
    client_tls,
    leaf_tls,
    register_instant_replica,
    serve_bare_relay,
    serve_instant_replica,
    serve_span_sink,
)

from hybrid.serving.ports import free_port  # noqa: E402

DEADLINE_S = 10.0


def arrivals_at(rate: float, seconds: float, seed: int) -> list:
    """Poisson arrivals at ``rate`` for ``seconds``: one-word REALTIME prompts asking for one token."""
    from hybrid.bench.workload import PRIORITIES, WorkloadConfig, schedule

    return schedule(
        WorkloadConfig(
            steady_rps=rate,
            steady_s=seconds,
            burst_s=0,
            recovery_s=0,
            class_mix={"REALTIME": 1.0},
            prompt_words=(1, 1),
            max_new_tokens=(1, 1),
            deadlines_s={p: DEADLINE_S for p in PRIORITIES},
            seed=seed,
        )
    )


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    found, waiting = [], [pid]
    while waiting:
        current = waiting.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                waiting += [int(child) for child in children.read_text().split()]
            except OSError:  # the task ended meanwhile
                pass
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and all its children (Linux /proc)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(runs: list, offered: int, seconds_per_run: float) -> dict:
    """One path's figures at one rate over its runs (RunResults). ``offered``: the arrivals scheduled in all."""
    from hybrid.bench.loadgen import OK

    records = [r for run in runs for r in run.records]
    ok = [1000 * r.latency_s for r in records if r.ok]
    lag_ms = [1000 * (r.sent_s - r.scheduled_s) for r in records]
    failed = len(records) - len(ok)
    # A generator that falls behind sends a run's last request after the schedule's end.
    sending_s = sum(max([seconds_per_run, *(r.sent_s for r in run.records)]) for run in runs)
    return {
        "offered_per_s": offered / (seconds_per_run * len(runs)),
        "sent_per_s": len(records) / sending_s,
        "sent": len(records),
        "failed": failed,
        "failed_pct": 100 * failed / max(1, len(records)),
        "failed_by_status": {
            s: sum(r.status == s for r in records) for s in sorted({r.status for r in records} - {OK})
        },
        "p50_ms": percentile(ok, 0.50),
        "p99_ms": percentile(ok, 0.99),
        "generator_lag_p99_ms": percentile(lag_ms, 0.99),
        "generator_lag_max_ms": max(lag_ms, default=None),
        # Divided into the cores it has, this says what rate the generator can offer.
        "generator_cpu_ms_per_request": 1000 * sum(run.generator_cpu_s for run in runs) / max(1, len(records)),
    }


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def measure_rate(rate: float, targets: dict[str, str], pids: dict[str, list[int]], args: argparse.Namespace) -> dict:
    """Interleaved runs of each target (direct, routed and, with ``--relay-floor``, relayed) at one rate. ``pids``:
    the router's, the relay's and the replica processes'; the router's CPU is counted over the routed runs, the
    relay's over the relayed ones, the replica's over each path's own."""
    from hybrid.bench.loadgen_pool import run_pool

    def cpu(name: str) -> float:
        return sum(cpu_seconds(pid) for pid in pids.get(name, []))

    middle = {"routed": "router", "relayed": "relay"}
    runs: dict[str, list] = {name: [] for name in targets}
    replica_cpu_s = dict.fromkeys(targets, 0.0)
    middle_cpu_s = dict.fromkeys(targets, 0.0)
    offered = 0
    for round_ in range(args.rounds):
        arrivals = arrivals_at(rate, args.seconds, seed=round_)
        offered += len(arrivals)
        for name, target in targets.items():
            middle_before, replica_before = cpu(middle.get(name, "")), cpu("replica")
            runs[name].append(run_pool(target, arrivals, args.loadgen_processes, name, False, args.loadgen_channels))
            replica_cpu_s[name] += cpu("replica") - replica_before
            middle_cpu_s[name] += cpu(middle.get(name, "")) - middle_before
    figures = {name: summarize(runs[name], offered, args.seconds) for name in targets}
    for name, path in figures.items():
        # The replica answers at once: past a core's worth a second in one of its processes, it is the bottleneck.
        path["replica_cpu_ms_per_request"] = 1000 * replica_cpu_s[name] / max(1, path["sent"])
    direct, routed = figures["direct"], figures["routed"]
    result = {
        **figures,
        "added_p50_ms": difference(routed["p50_ms"], direct["p50_ms"]),
        "added_p99_ms": difference(routed["p99_ms"], direct["p99_ms"]),
        # What bounds the router's rate: its CPU (all its processes) per routed request.
        "router_cpu_ms_per_request": 1000 * middle_cpu_s["routed"] / max(1, routed["sent"]),
    }
    if "relayed" in figures:
        relayed = figures["relayed"]
        result["relay_added_p50_ms"] = difference(relayed["p50_ms"], direct["p50_ms"])
        result["relay_added_p99_ms"] = difference(relayed["p99_ms"], direct["p99_ms"])
        result["relay_cpu_ms_per_request"] = 1000 * middle_cpu_s["relayed"] / max(1, relayed["sent"])
    return result


def wait_ready(process: subprocess.Popen, marker: str) -> None:
    """Until the process prints ``marker``; from then on its output is read and dropped, so it never blocks on a
    full pipe."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if marker in line:
            threading.Thread(target=collections.deque, args=(process.stdout, 0), daemon=True).start()
            return
        if not line and process.poll() is not None:
            raise RuntimeError(f"a helper process exited: {process.args}")
    raise RuntimeError(f"no '{marker}' from {process.args}")


def start_stack(
    args: argparse.Namespace, folder: Path, tls_dir: Path | None = None
) -> tuple[list[subprocess.Popen], subprocess.Popen, dict, dict[str, list[int]]]:
    """The replica processes (then the bare relay with ``--relay-floor`` and the span sink with ``--tracing``) and
    the router, serving (with mutual TLS on the certificates of ``tls_dir``); returns them, the targets and the
    process ids whose CPU each figure counts."""
    discovery = f"static:{folder / 'discovery.yaml'}"
    replica_port, router_port = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    replica_tls = ["--replica-tls-dir", str(tls_dir)] if tls_dir else []
    replicas = [
        subprocess.Popen([sys.executable, __file__, "--instant-replica", str(replica_port), *replica_tls], **common)
        for _ in range(args.replica_processes)
    ]
    for replica in replicas:
        wait_ready(replica, "ready on")
    register_instant_replica(replica_port, discovery)
    pids = {"replica": [r.pid for r in replicas]}
    targets = {"direct": f"127.0.0.1:{replica_port}"}
    if args.relay_floor and tls_dir is None:
        relay_port = free_port()
        relay = subprocess.Popen(
            [sys.executable, __file__, "--bare-relay", str(relay_port), f"127.0.0.1:{replica_port}"], **common
        )
        wait_ready(relay, "bare relay ready on")
        replicas.append(relay)
        pids["relay"], targets["relayed"] = [relay.pid], f"127.0.0.1:{relay_port}"
    workers = ["--workers", str(args.router_workers)] if args.router_workers > 1 else []
    router_tls = []
    if tls_dir:
        server = leaf_tls(tls_dir, "server")
        router_tls = ["--tls-cert", str(server.cert), "--tls-key", str(server.key), "--tls-ca", str(server.ca)]
    observed = []
    if args.tracing is not None:
        sink_port = free_port()
        sink = subprocess.Popen([sys.executable, __file__, "--span-sink", str(sink_port)], **common)
        wait_ready(sink, "span sink ready on")
        replicas.append(sink)  # stopped with the replicas; its CPU is counted as no one's
        observed += ["--otlp-endpoint", f"http://127.0.0.1:{sink_port}", "--trace-sample", str(args.tracing)]
    if args.request_log:
        observed += ["--request-log", os.devnull]
    if args.keys and (tls_dir is not None or not args.tls):  # with --tls: the secured stack against a bare one
        workers += ["--keys", str(with_a_key(folder))]
    router = subprocess.Popen(
        [sys.executable, "-m", "hybrid.cli", "router", "serve", "--port", str(router_port), "--discovery", discovery]
        + workers
        + router_tls
        + observed,
        **common,
    )
    targets["routed"] = f"127.0.0.1:{router_port}"
    pids["router"] = [router.pid]
    return replicas, router, targets, pids


def with_a_key(folder: Path) -> Path:
    """A key file of one key without limits; the load generator's clients send it ($HYBRID_API_KEY, inherited by
    its processes), the replica ignores it."""
    from hybrid import wire
    from hybrid.security.keys import add_key

    path = folder.parent / "keys.yaml"  # one file for every stack of the run: the clients send one key
    if not path.exists():
        os.environ[wire.API_KEY_ENV] = add_key(path, "bench", ("realtime", "interactive", "batch"))
    return path


def run(args: argparse.Namespace) -> dict[str, dict]:
    """Every rate on each stack (the plaintext one; with --tls the mTLS one too, measured in turn with it):
    {stack: {rate: figures}}."""
    from hybrid.bench.loadgen_pool import run_pool
    from hybrid.security import certs
    from hybrid.security.tls import tls_environment

    folder = Path(tempfile.mkdtemp(prefix="router-bench-"))
    tls_dirs: dict[str, Path | None] = {"plaintext": None}
    if args.tls:
        tls_dirs["mtls"] = folder / "tls"
        certs.init_ca_folder(tls_dirs["mtls"])
    stacks = {name: start_stack(args, folder / name, tls_dir) for name, tls_dir in tls_dirs.items()}
    results: dict[str, dict] = {name: {} for name in stacks}
    try:
        for name, (_, router, targets, _) in stacks.items():
            wait_ready(router, "ready on")
            with tls_environment(client_tls(tls_dirs[name])):
                for target in targets.values():  # warm both paths
                    run_pool(target, arrivals_at(100, 2, seed=99), 1, chat=False)
        for rate in [float(r) for r in args.rates.split(",")]:
            for name, (_, _, targets, pids) in stacks.items():
                with tls_environment(client_tls(tls_dirs[name])):
                    results[name][f"{rate:g}"] = measure_rate(rate, targets, pids, args)
                print(f"{name} {rate:g}/s", json.dumps(results[name][f"{rate:g}"]), flush=True)
    finally:
        processes = [p for replicas, router, _, _ in stacks.values() for p in (router, *replicas)]
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    return results


def tls_cost(results: dict[str, dict]) -> dict[str, float]:
    """Per rate, what mutual TLS adds to the router's CPU per routed request (ms)."""
    return {
        rate: figures["router_cpu_ms_per_request"] - results["plaintext"][rate]["router_cpu_ms_per_request"]
        for rate, figures in results.get("mtls", {}).items()
    }


def table(results: dict) -> str:
    """The results as a Markdown table, ready for docs/benchmarks.md."""

    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    lines = [
        "| offered req/s | sent req/s direct / routed | failed routed (direct) | direct p50 / p99 ms "
        "| routed p50 / p99 ms | **added p50 / p99 ms** | router CPU ms/request "
        "| generator lag p99 ms direct / routed | generator CPU ms/request direct / routed "
        "| replica CPU ms/request direct / routed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        d, t = r["direct"], r["routed"]
        lines.append(
            f"| {t['offered_per_s']:.0f} | {d['sent_per_s']:.0f} / {t['sent_per_s']:.0f} "
            f"| {t['failed']} = {t['failed_pct']:.2f}% ({d['failed']}) "
            f"| {ms(d['p50_ms'])} / {ms(d['p99_ms'])} | {ms(t['p50_ms'])} / {ms(t['p99_ms'])} "
            f"| **{ms(r['added_p50_ms'])} / {ms(r['added_p99_ms'])}** | {r['router_cpu_ms_per_request']:.3f} "
            f"| {ms(d['generator_lag_p99_ms'])} / {ms(t['generator_lag_p99_ms'])} "
            f"| {d['generator_cpu_ms_per_request']:.3f} / {t['generator_cpu_ms_per_request']:.3f} "
            f"| {d['replica_cpu_ms_per_request']:.3f} / {t['replica_cpu_ms_per_request']:.3f} |"
        )
    for rate, r in results.items():
        if "relayed" in r:
            lines.append(
                f"\nbare grpc.aio relay at {rate}/s: adds {ms(r['relay_added_p50_ms'])} / {ms(r['relay_added_p99_ms'])} "
                f"ms p50 / p99, {r['relay_cpu_ms_per_request']:.3f} ms CPU per request "
                f"({r['relayed']['failed']} failed), against the router's {r['router_cpu_ms_per_request']:.3f}"
            )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,250,500", help="requests a second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one run")
    parser.add_argument("--rounds", type=int, default=2, help="direct/routed pairs per rate, interleaved")
    parser.add_argument("--loadgen-processes", type=int, default=1, help="processes the load generator sends from")
    parser.add_argument("--loadgen-channels", type=int, default=1, help="gRPC channels (connections) per process")
    parser.add_argument("--router-workers", type=int, default=1, help="passed as `router serve --workers` when > 1")
    parser.add_argument("--replica-processes", type=int, default=1, help="instant replica processes on one port")
    parser.add_argument(
        "--tls", action="store_true", help="also measure a stack with mutual TLS on every hop, in the same run"
    )
    parser.add_argument(
        "--keys",
        action="store_true",
        help="the router checks API keys (`router serve --keys`; with --tls, the mTLS stack's router only)",
    )
    parser.add_argument("--out", default="router_overhead.json", help="JSON of every figure")
    parser.add_argument("--instant-replica", metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--tracing",
        type=float,
        nargs="?",
        const=1.0,
        default=None,
        metavar="SAMPLE",
        help="the router traces this share of the requests (1 without a value), exporting to a collector stand-in",
    )
    parser.add_argument("--request-log", action="store_true", help="the router writes its request log (to /dev/null)")
    parser.add_argument(
        "--relay-floor",
        action="store_true",
        help="also measure a bare grpc.aio relay (bytes in, bytes out, nothing else) on the plaintext stack: the "
        "floor of any router on grpc.aio",
    )
    parser.add_argument("--span-sink", metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--bare-relay", nargs=2, metavar=("PORT", "TARGET"), help=argparse.SUPPRESS)
    parser.add_argument("--replica-tls-dir", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.instant_replica:
        asyncio.run(serve_instant_replica(int(args.instant_replica), args.replica_tls_dir))
        return 0
    if args.span_sink:
        asyncio.run(serve_span_sink(int(args.span_sink)))
        return 0
    if args.bare_relay:
        asyncio.run(serve_bare_relay(int(args.bare_relay[0]), args.bare_relay[1]))
        return 0
    try:
        results = run(args)
    except KeyboardInterrupt:  # the replica, the router and the generator's processes are stopped by now
        print("interrupted", file=sys.stderr)
        return 130
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "command": " ".join(["python", *sys.argv]),
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "loadgen_processes": args.loadgen_processes,
        "loadgen_channels": args.loadgen_channels,
        "router_workers": args.router_workers,
        "keys": args.keys,
        "replica_processes": args.replica_processes,
        "tracing": args.tracing,
        "request_log": args.request_log,
        "relay_floor": args.relay_floor,
        "results": results["plaintext"],
        "table": table(results["plaintext"]),
    }
    if args.tls:
        report |= {
            "results_mtls": results["mtls"],
            "table_mtls": table(results["mtls"]),
            "tls_added_router_cpu_ms_per_request": tls_cost(results),
        }
    Path(args.out).write_text(json.dumps(report, indent=2))
    for name, figures in results.items():
        print(f"\n{name}\n{table(figures)}")
    for rate, added in tls_cost(results).items():
        what = "mutual TLS and the key check add" if args.keys else "mutual TLS adds"
        print(f"{what} {added:.3f} ms of router CPU per request at {rate}/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
