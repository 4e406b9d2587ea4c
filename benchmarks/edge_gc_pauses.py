"""The garbage collector's pauses in an edge agent's process while it streams, with the start's heap frozen
(what ``hybrid edge serve`` and ``hybrid-edge run`` do) and without.

Each mode starts an edge agent in a process of its own on a real artifact, streams answers to it from client
threads for a while (closed loop), and reads the agent's own ``hybrid_replica_gc_pause_seconds`` from its
``/metrics``; the clients record each answer's longest wait between two chunks. Example:

    python benchmarks/edge_gc_pauses.py --seconds 60 --out benchmarks/results/edge_gc_pauses_devvm.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hybrid import constants  # noqa: E402
from hybrid.client import HybridClient  # noqa: E402
from hybrid.serving.ports import free_port  # noqa: E402

AGENT = """
import asyncio, logging, sys
logging.basicConfig(level=logging.INFO)
from pathlib import Path
from edge_agent.config import EdgeAgentConfig
from edge_agent.server import EdgeAgent
from hybrid.serving.background import serve_until_signalled

artifact, port, metrics_port, freeze = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "frozen"
config = EdgeAgentConfig(artifact=Path(artifact), port=port, metrics_port=metrics_port, discovery="none")


async def main():  # grpc.aio: the agent is made on the loop that serves it
    await serve_until_signalled(EdgeAgent(config), freeze_start_heap=freeze)


asyncio.run(main())
"""

QUESTIONS = [
    "Tell me about the sea.",
    "What is the capital of France?",
    "Write a short poem about autumn.",
    "How do plants make their food?",
]


def gc_pauses(metrics_port: int) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    found: dict = {}
    for line in text.splitlines():
        if not line.startswith("hybrid_replica_gc_pause_seconds"):
            continue
        name, value = line.rsplit(" ", 1)
        generation = name.split('generation="')[1].split('"')[0]
        figures = found.setdefault(f"generation_{generation}", {})
        if name.startswith("hybrid_replica_gc_pause_seconds_count"):
            figures["count"] = int(float(value))
        elif name.startswith("hybrid_replica_gc_pause_seconds_sum"):
            figures["total_ms"] = round(float(value) * 1000, 1)
        elif 'le="0.05"' in name:
            figures["under_50_ms"] = int(float(value))
    return found


def load(address: str, seconds: float, clients: int, new_tokens: int) -> dict:
    gaps: list[float] = []
    answers = [0]
    lock = threading.Lock()
    until = time.monotonic() + seconds

    def ask(index: int) -> None:
        with HybridClient(address, timeout_s=120) as client:
            while time.monotonic() < until:
                last, longest = None, 0.0
                question = QUESTIONS[index % len(QUESTIONS)]
                for _ in client.stream(messages=[{"role": "user", "content": question}], max_new_tokens=new_tokens):
                    now = time.perf_counter()
                    if last is not None:
                        longest = max(longest, (now - last) * 1000)
                    last = now
                with lock:
                    gaps.append(longest)
                    answers[0] += 1

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(gaps)
    return {
        "answers": answers[0],
        "longest_gap_ms": {
            "p50": round(ordered[len(ordered) // 2], 1),
            "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
            "max": round(ordered[-1], 1),
        },
    }


def measure(args: argparse.Namespace, mode: str) -> dict:
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, args.artifact, str(port), str(metrics_port), mode],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in agent.stderr:
            if "ready on" in line:
                break
        else:
            raise RuntimeError(f"the {mode} agent exited before it was ready")
        threading.Thread(target=lambda: [None for _ in agent.stderr], daemon=True).start()  # keep the pipe drained
        time.sleep(1.0)  # the freeze follows the ready line
        figures = load(f"127.0.0.1:{port}", args.seconds, args.clients, args.new_tokens)
        figures["collections"] = gc_pauses(metrics_port)
        return figures
    finally:
        agent.terminate()
        agent.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", help="an edge artifact folder (default: the cached lean-int8 one)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", default="edge_gc_pauses.json")
    args = parser.parse_args()
    if args.artifact is None:
        found = sorted((constants.CACHE_DIR / "artifacts").glob("smollm2-135m-lean-int8-b32-*"))
        if not found:
            parser.error("no cached lean-int8 artifact: pass --artifact (`hybrid export --precision lean-int8`)")
        args.artifact = str(found[-1])
    results = {mode: measure(args, mode) for mode in ("as before", "frozen")}
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": " ".join(["python", *sys.argv]),
        "artifact": Path(args.artifact).name,
        "clients": args.clients,
        "new_tokens": args.new_tokens,
        "seconds": args.seconds,
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    for mode, figures in results.items():
        gaps = figures["longest_gap_ms"]
        print(
            f"{mode}: {figures['answers']} answers; an answer's longest gap p50 {gaps['p50']:.0f}, p99 {gaps['p99']:.0f}, "
            f"max {gaps['max']:.0f} ms; collections {figures['collections']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
