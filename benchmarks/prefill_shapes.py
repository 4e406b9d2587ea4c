"""What a fresh cloud replica's first prefills cost, by prefill attention kernel and with or without the
prefill warm-up, in one run.

Each variant runs in a fresh process, as a replica starts: the 135M shape with random weights on the GPU and
a ``StaticCacheLlama`` with every decode graph captured. ``cudnn`` restricts prefill attention to cuDNN's
kernel, which SDPA picks on Hopper for grouped key/value heads; ``flash`` is the replica's own choice
(``PREFILL_ATTENTION``); ``flash-warmed`` also runs ``warm_prefill(--warm-tokens)`` first. Each then replays
the same sequence of prefills a burst brings: batches of 1 to ``--max-rows`` prompts whose lengths are drawn
from ``--prompt-tokens`` (low,high), each timed to the GPU's end. The sequence runs twice; the second pass
is the process already warm, so a prefill's first-pass time over its second-pass time is what meeting its
shape first costs.

Weights are random: a prefill's time does not depend on weight values.

    python benchmarks/prefill_shapes.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# attention kernels of prefill, and whether the warm-up runs first
VARIANTS = {"cudnn": ("cudnn", False), "flash": ("flash", False), "flash-warmed": ("flash", True)}


def prefill_sequence(count: int, max_rows: int, low: int, high: int, seed: int) -> list[list[list[int]]]:
    rng = random.Random(seed)
    batches = []
    for _ in range(count):
        rows = rng.randint(1, max_rows)
        batches.append([[rng.randint(10, 40000)] * rng.randint(low, high) for _ in range(rows)])
    return batches


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    import torch
    from decode_workload import random_model
    from torch.nn.attention import SDPBackend

    from cloud import model as model_module

    attention, warmed = VARIANTS[variant]
    if attention == "cudnn":
        model_module.PREFILL_ATTENTION = [SDPBackend.CUDNN_ATTENTION]

    started = time.perf_counter()
    model = model_module.StaticCacheLlama(
        random_model("smollm2-135m", "cuda"), max_batch=args.max_batch, max_context=args.max_context, device="cuda"
    )
    torch.cuda.synchronize()
    built_s = time.perf_counter() - started
    warm_s, shapes = 0.0, []
    if warmed:
        started = time.perf_counter()
        shapes = model.warm_prefill(args.warm_tokens)
        torch.cuda.synchronize()
        warm_s = time.perf_counter() - started
    low, high = (int(x) for x in args.prompt_tokens.split(","))
    batches = prefill_sequence(args.prefills, args.max_rows, low, high, args.seed)
    passes = []
    for _ in range(2):
        times = []
        for prompts in batches:
            torch.cuda.synchronize()
            begun = time.perf_counter()
            model.prefill(prompts, first_slot=0).argmax(dim=-1).tolist()
            times.append((time.perf_counter() - begun) * 1000)
        passes.append(times)
    first, second = passes
    return {
        "variant": variant,
        "prefill_attention": [b.name for b in model_module.PREFILL_ATTENTION],
        "build_s": built_s,
        "warm_s": warm_s,
        "warm_shapes": len(shapes),
        "first_pass_ms": summary(first),
        "second_pass_ms": summary(second),
        "first_pass_total_ms": sum(first),
        "second_pass_total_ms": sum(second),
        "first_pass_excess_ms": sum(max(0.0, a - b) for a, b in zip(first, second)),
        "slowest_first": sorted(first, reverse=True)[:5],
    }


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[int(0.95 * (len(ordered) - 1))],
        "max": ordered[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, help="run one variant in this process (internal)")
    parser.add_argument("--prefills", type=int, default=200, help="prefills in the replayed sequence")
    parser.add_argument("--max-rows", type=int, default=32, help="most prompts in one prefill")
    parser.add_argument("--prompt-tokens", default="50,100", help="low,high prompt length in tokens")
    parser.add_argument("--max-batch", type=int, default=128, help="replica max batch size (cache slots)")
    parser.add_argument("--max-context", type=int, default=2048, help="replica max context tokens")
    parser.add_argument("--warm-tokens", type=int, default=32768, help="prefill_warmup_tokens of the warm variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which variants to run, in order")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args)))
        return
    settings = {k: v for k, v in vars(args).items() if k not in ("variant", "out", "variants")}
    forwarded = [f"--{name.replace('_', '-')}={value}" for name, value in settings.items()]
    results = []
    for variant in args.variants.split(","):
        done = subprocess.run(
            [sys.executable, __file__, "--variant", variant, *forwarded], check=True, capture_output=True, text=True
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    import torch

    report = {
        "machine": platform.node(),
        "gpu": torch.cuda.get_device_name(0),
        "weights": "random",
        "args": settings,
        "results": results,
    }
    for result in results:
        print(
            f"{result['variant']:>12}: warm-up {result['warm_s']:.2f} s over {result['warm_shapes']} shapes; "
            f"first pass p50/p95/max {fmt(result['first_pass_ms'])} ms, total {result['first_pass_total_ms']:.0f} ms; "
            f"second pass {fmt(result['second_pass_ms'])} ms, total {result['second_pass_total_ms']:.0f} ms; "
            f"first-pass excess {result['first_pass_excess_ms']:.0f} ms"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


def fmt(s: dict) -> str:
    return f"{s['p50']:.2f}/{s['p95']:.2f}/{s['max']:.2f}"


if __name__ == "__main__":
    main()
