"""What the router adds to a request's latency, against calling the replica directly.

The replica here answers at once (one final chunk, no model), so the figures are the router's own
cost: parsing, the routing decision, the second gRPC hop and proxying the stream. It is a real
hybrid.v1.Inference server on loopback built from the same server shell as the edge agent; the
model is left out because no model on this machine answers 500 requests a second.

Three processes: the replica, the router (`hybrid router serve`, static discovery) and this load
generator, which sends open-loop (Poisson arrivals at the given rate, whether or not answers have
come back) alternately straight to the replica and through the router.

    python benchmarks/router_overhead.py --rates 100,250,500 --seconds 10 --out router_overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def serve_instant_replica(port: int, discovery: str) -> None:
    from hybrid.discovery import ReplicaRecord, registry_from_spec
    from hybrid.protocol import Chunk, FinishReason, ServedBy, Tier
    from hybrid.serving.grpc_shell import ServerShell, inference_handler
    from hybrid.v1 import inference_pb2 as pb

    served_by = ServedBy(Tier.EDGE, "instant", "local", "none")

    async def generate(message, context):
        yield Chunk(message.request_id, "ok", [1], served_by, FinishReason.STOP, 1, 1).to_proto()

    async def get_load(message, context):
        return pb.LoadReport(replica_id="instant", capacity=1024)

    shell = ServerShell("127.0.0.1", port, ["hybrid.v1.Inference"])
    shell.server.add_generic_rpc_handlers((inference_handler(generate, get_load),))
    await shell.start()
    record = ReplicaRecord(
        id="instant",
        address="127.0.0.1",
        port=port,
        tier="edge",
        model="instant",
        precision="none",
        region="local",
        capacity=1024,
    )
    registry_from_spec(discovery).register(record)
    print(f"instant replica ready on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


async def open_loop(target: str, rate: float, seconds: float, seed: int) -> list[float]:
    """Latencies (ms) of requests sent at Poisson arrivals; failures are counted as None."""
    import grpc

    from hybrid.client import build_request
    from hybrid.v1 import inference_pb2_grpc as pb_grpc

    rng = random.Random(seed)
    latencies: list[float | None] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceStub(channel)
        request = build_request("ping", max_new_tokens=1, priority="realtime")

        async def one() -> None:
            started = time.perf_counter()
            try:
                async for _ in stub.Generate(request, timeout=10):
                    pass
                latencies.append((time.perf_counter() - started) * 1000)
            except grpc.aio.AioRpcError:
                latencies.append(None)

        tasks = []
        began = time.perf_counter()
        next_at = began
        while next_at - began < seconds:
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
            next_at += rng.expovariate(rate)
        await asyncio.gather(*tasks)
    return latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(latencies: list[float | None]) -> dict:
    ok = [v for v in latencies if v is not None]
    return {
        "sent": len(latencies),
        "failed": len(latencies) - len(ok),
        "p50_ms": percentile(ok, 0.50),
        "p99_ms": percentile(ok, 0.99),
        "mean_ms": statistics.fmean(ok),
    }


def wait_ready(process: subprocess.Popen, marker: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if marker in line:
            return
        if not line and process.poll() is not None:
            raise RuntimeError(f"a helper process exited: {process.args}")
    raise RuntimeError(f"no '{marker}' from {process.args}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,250,500", help="requests a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="direct/routed pairs per rate, interleaved")
    parser.add_argument("--out", default="router_overhead.json")
    parser.add_argument("--instant-replica", nargs=2, metavar=("PORT", "DISCOVERY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instant_replica:
        asyncio.run(serve_instant_replica(int(args.instant_replica[0]), args.instant_replica[1]))
        return 0

    folder = Path(tempfile.mkdtemp(prefix="router-bench-"))
    discovery = f"static:{folder / 'discovery.yaml'}"
    replica_port, router_port = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    replica = subprocess.Popen([sys.executable, __file__, "--instant-replica", str(replica_port), discovery], **common)
    wait_ready(replica, "ready on")
    router = subprocess.Popen(
        [sys.executable, "-m", "hybrid.cli", "router", "serve", "--port", str(router_port), "--discovery", discovery],
        **common,
    )
    try:
        wait_ready(router, "ready on")
        direct, routed = f"127.0.0.1:{replica_port}", f"127.0.0.1:{router_port}"
        asyncio.run(open_loop(routed, 50, 2, seed=0))  # warm both paths
        asyncio.run(open_loop(direct, 50, 2, seed=0))
        results = {}
        for rate in [float(r) for r in args.rates.split(",")]:
            runs = {"direct": [], "routed": []}
            router_cpu_s = 0.0
            for round_ in range(args.rounds):
                for name, target in (("direct", direct), ("routed", routed)):
                    before = cpu_seconds(router.pid)
                    runs[name] += asyncio.run(open_loop(target, rate, args.seconds, seed=round_))
                    if name == "routed":
                        router_cpu_s += cpu_seconds(router.pid) - before
            direct_s, routed_s = summarize(runs["direct"]), summarize(runs["routed"])
            results[str(int(rate))] = {
                "direct": direct_s,
                "routed": routed_s,
                "added_p50_ms": routed_s["p50_ms"] - direct_s["p50_ms"],
                "added_p99_ms": routed_s["p99_ms"] - direct_s["p99_ms"],
                # The router's own CPU per routed request: what bounds its rate on one core.
                "router_cpu_ms_per_request": 1000 * router_cpu_s / max(1, routed_s["sent"]),
            }
            print(f"{rate:.0f}/s", json.dumps(results[str(int(rate))]), flush=True)
    finally:
        router.terminate()
        replica.terminate()
        router.wait(timeout=30)
        replica.wait(timeout=30)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print("\nrate  direct p50/p99 ms  routed p50/p99 ms  added p50/p99 ms  failed  router CPU ms/request")
    for rate, r in results.items():
        print(
            f"{rate:>4}  {r['direct']['p50_ms']:6.2f} / {r['direct']['p99_ms']:6.2f}   "
            f"{r['routed']['p50_ms']:6.2f} / {r['routed']['p99_ms']:6.2f}   "
            f"{r['added_p50_ms']:6.2f} / {r['added_p99_ms']:6.2f}   {r['direct']['failed'] + r['routed']['failed']}"
            f"       {r['router_cpu_ms_per_request']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
