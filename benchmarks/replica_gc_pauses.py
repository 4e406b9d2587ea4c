"""What Python's cyclic garbage collector costs a cloud replica while it streams, with and without freezing the
objects the replica made at start (``gc.freeze()``, which Ray Serve does once a replica's constructor has returned,
``RAY_SERVE_FREEZE_GC_ON_STARTUP``; this process is not a Serve replica, so it freezes by hand).

A replica process holds everything it imported and loaded at start (Ray Serve, torch, transformers, the model):
some 400,000 objects that the collector tracks. While it serves, every token makes short-lived objects, and every
so often the collector's oldest generation comes due and walks all of them, holding the interpreter, so the
engine thread and every stream stop together. This measures those pauses in one process that has a replica's
heap (Ray Serve imported, the real model loaded through ``cloud.engine.build_engine``) and streams at a GPU's
token rate (a tiny random model at a full batch, as ``replica_streaming_cpu.py`` does; its answers are noise).

Per mode, one after the other in one run: every collection's generation and duration (``gc.callbacks``), tokens
per second, each answer's longest wait between two of its chunks, and what one full collection costs at the end. Example:

    python benchmarks/replica_gc_pauses.py --rounds 20 --out benchmarks/results/replica_gc_pauses_devvm.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from decode_workload import prompts, word_tokenizer  # noqa: E402
from replica_streaming_cpu import VOCAB, build_engine  # noqa: E402


class Collections:
    """Every collection's generation and duration, from the collector's own callbacks."""

    def __init__(self):
        self.seen: list[tuple[int, float]] = []
        self._began = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seen.append((info["generation"], (time.perf_counter() - self._began) * 1000))

    def summary(self) -> dict:
        summary = {}
        for generation in (0, 1, 2):
            durations = sorted(ms for g, ms in self.seen if g == generation)
            summary[f"generation_{generation}"] = {
                "count": len(durations),
                "total_ms": round(sum(durations), 1),
                "max_ms": round(max(durations, default=0.0), 1),
            }
        return summary


async def stream(engine, texts: list[str], new: int) -> tuple[float, int, list[float]]:
    """All answers at once; returns the seconds, the tokens and each answer's longest gap between chunks (ms)."""
    from hybrid.protocol import GenerationRequest, Priority

    async def one(index: int, text: str) -> tuple[int, float]:
        request = GenerationRequest(
            request_id=f"r{index}", model="", prompt=text, messages=None, max_new_tokens=new, temperature=0.0,
            top_p=1.0, seed=None, stop=[], priority=Priority.BATCH,
        )  # fmt: skip
        tokens, last, longest = 0, None, 0.0
        async for chunk in engine.generate(request):
            now = time.perf_counter()
            if last is not None:
                longest = max(longest, (now - last) * 1000)
            last, tokens = now, tokens + len(chunk.token_ids)
        return tokens, longest

    began = time.perf_counter()
    answers = await asyncio.gather(*(one(i, t) for i, t in enumerate(texts)))
    return time.perf_counter() - began, sum(t for t, _ in answers), [gap for _, gap in answers]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def measure(args: argparse.Namespace, freeze: bool) -> dict:
    tokenizer = word_tokenizer(VOCAB)
    texts = [tokenizer.decode(row) for row in prompts(args.batch, args.prompt_tokens, VOCAB).tolist()]
    engine = build_engine(tokenizer, args.batch, args.prompt_tokens + args.new_tokens + 8)
    engine.start()
    try:
        asyncio.run(stream(engine, texts, args.new_tokens))  # warm-up
        gc.collect()
        if freeze:
            gc.freeze()
        collections = Collections()
        gc.callbacks.append(collections)
        try:
            seconds, tokens, gaps = 0.0, 0, []
            for _ in range(args.rounds):
                s, t, g = asyncio.run(stream(engine, texts, args.new_tokens))
                seconds, tokens, gaps = seconds + s, tokens + t, gaps + g
        finally:
            gc.callbacks.remove(collections)
        # What a full collection would cost if one came due now: frozen objects are not walked.
        began = time.perf_counter()
        gc.collect()
        full_ms = (time.perf_counter() - began) * 1000
        gc.unfreeze()
    finally:
        engine.stop()
    return {
        "tracked_objects": len(gc.get_objects()),
        "full_collection_ms": round(full_ms, 1),
        "tokens_per_s": round(tokens / seconds, 1),
        "seconds": round(seconds, 1),
        "answers": len(gaps),
        "longest_gap_ms": {
            "p50": round(quantile(gaps, 0.5), 1),
            "p99": round(quantile(gaps, 0.99), 1),
            "max": round(max(gaps), 1),
        },
        "collections": collections.summary(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20, help="full batches streamed per mode")
    parser.add_argument("--out", default="replica_gc_pauses.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray import serve  # noqa: F401 - a replica's process has Serve imported

    from cloud.config import ReplicaSettings
    from cloud.engine import build_engine as build_replica_engine

    replica = build_replica_engine(ReplicaSettings(model="smollm2-135m", device="cpu"), "heap")  # held, not run
    began = time.perf_counter()
    gc.collect()
    full_ms = (time.perf_counter() - began) * 1000
    results = {mode: measure(args, freeze=mode == "frozen") for mode in ("unfrozen", "frozen")}
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": " ".join(["python", *sys.argv]),
        "weights": "the real model loaded and held (the heap); streaming on a random one-layer model (the rate)",
        "full_collection_ms_at_start": round(full_ms, 1),
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "results": results,
    }
    del replica
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"one full collection at start: {full_ms:.0f} ms")
    for mode, figures in results.items():
        oldest = figures["collections"]["generation_2"]
        gaps = figures["longest_gap_ms"]
        print(
            f"{mode}: {figures['tokens_per_s']:.0f} tok/s; a full collection at the end {figures['full_collection_ms']:.1f} ms; "
            f"{oldest['count']} full collections while streaming, {oldest['total_ms']:.0f} ms "
            f"in all, longest {oldest['max_ms']:.0f} ms; an answer's longest gap p50 {gaps['p50']:.0f}, p99 "
            f"{gaps['p99']:.0f}, max {gaps['max']:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
