"""Cloud engine throughput against transformers on the same GPU, in one run.

For each model shape and batch size: B prompts of --prompt-tokens random tokens, --new-tokens
forced new tokens each (random weights, end tokens ignored), greedy. Paths:

* ``eager``   transformers ``generate`` with its dynamic cache;
* ``static``  transformers ``generate(cache_implementation="static")``, which compiles the step;
* ``cb``      transformers ``generate_batch`` (its continuous batching), where the version has it;
* ``engine``  hybrid's TorchEngine (StaticCacheLlama + CUDA graphs) driven through its public
  ``generate`` stream, scheduler and text streaming included; each decode step starts before the host's
  work on the last one, as a replica runs it;
* ``engine-serial`` the same engine with each step waiting for the host's work on the last one;
* ``serve``   the same engine inside one Ray Serve replica, reached with hybrid's async client on
  loopback each way ``--serve-ways`` names, one after the other in this run (135M shape only):
  ``proxy`` (Serve's gRPC proxy), ``direct`` (the replica's own port: Serve's direct ingress) and
  ``router`` (`hybrid router serve` in a process of its own, reaching the replica on its own port);
  ``--serve-serial`` runs them all once more with the replica's steps one after the other.

tokens/s = B * new tokens / wall time of the whole call (prefill included, on every path).
Weights are random (the packaged model is too big to carry to the GPU machine); decode speed does
not depend on weight values. Prompts are synthetic words of a word-level tokenizer of the model's
vocabulary size, so each prompt is exactly --prompt-tokens tokens.

    python benchmarks/cloud_decode.py --shapes smollm2-135m --paths eager,static,engine,serve --out results.json
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
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud_serve_ways import serve_path  # noqa: E402
from decode_workload import (  # noqa: E402
    SHAPES,
    answer_lengths,
    prompts,
    random_model,
    summarize,
    summarize_tokens,
    timed,
    word_tokenizer,
)


def hf_generate(model, ids: torch.Tensor, new: int, repeats: int, static: bool) -> dict:
    ids = ids.to(model.device)
    kwargs = dict(
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=False,
        pad_token_id=0,
    )
    if static:
        kwargs["cache_implementation"] = "static"

    def run():
        with torch.inference_mode():
            out = model.generate(ids, **kwargs)
        assert out.shape[1] == ids.shape[1] + new, out.shape

    run()  # warm-up (and compile, for the static cache)
    return summarize(timed(run, repeats), ids.shape[0], new)


def hf_continuous(model, ids: torch.Tensor, new: int, repeats: int) -> dict:
    from transformers import GenerationConfig

    if not hasattr(model, "generate_batch"):
        return {"error": "this transformers has no generate_batch"}
    config = GenerationConfig(max_new_tokens=new, min_new_tokens=new, do_sample=False, eos_token_id=-1, pad_token_id=0)
    inputs = ids.tolist()

    def run():
        # generate_batch manages its own no-grad state; inference_mode breaks its in-place resets.
        results = model.generate_batch(inputs=inputs, generation_config=config, progress_bar=False)
        produced = [len(r.generated_tokens) for r in results.values()]
        assert len(produced) == len(inputs) and min(produced) == new, (len(produced), min(produced, default=0))

    run()
    return summarize(timed(run, repeats), ids.shape[0], new)


def engine_run(engine, tokenizer, ids: torch.Tensor, news: list[int]) -> tuple[float, int]:
    from hybrid.client import build_request
    from hybrid.protocol import request_from_proto

    texts = [tokenizer.decode(row) for row in ids.tolist()]

    async def one(text, new):
        request = request_from_proto(build_request(prompt=text, max_new_tokens=new))
        count = 0
        async for chunk in engine.generate(request):
            count += len(chunk.token_ids)
        return count

    async def all_of_them():
        return await asyncio.gather(*(one(t, n) for t, n in zip(texts, news, strict=True)))

    started = time.perf_counter()
    counts = asyncio.run(all_of_them())
    return time.perf_counter() - started, sum(counts)


def engine_path(
    model, tokenizer, ids: torch.Tensor, news: list[int], repeats: int, max_batch: int, overlap_steps: bool = True
) -> dict:
    from cloud.engine import TorchEngine
    from cloud.model import StaticCacheLlama
    from hybrid.protocol import ServedBy, Tier

    static = StaticCacheLlama(model, max_batch=max_batch, max_context=ids.shape[1] + max(news) + 8)
    engine = TorchEngine(
        static,
        tokenizer,
        overlap_steps=overlap_steps,
        served_by=ServedBy(Tier.PRIVATE, "bench", "local", "bf16-random"),
        model_name="bench",
        full_precision=True,
        end_ids=set(),
        max_wait_ms=0.0,
        max_queued_requests=4096,
    )
    engine.start()
    try:
        engine_run(engine, tokenizer, ids, news)  # warm-up: captures the graphs this batch uses
        times, steps, step_s = [], 0, 0.0
        for _ in range(repeats):
            before_steps, before_s = engine.decode_steps, engine.decode_seconds
            seconds, produced = engine_run(engine, tokenizer, ids, news)
            assert produced == sum(news), (produced, ids.shape)
            times.append(seconds)
            steps += engine.decode_steps - before_steps
            step_s += engine.decode_seconds - before_s
        result = summarize_tokens(times, sum(news))
        result["decode_step_ms"] = 1000 * step_s / max(1, steps)
        result["graph_step_ms"] = graph_step_ms(static, ids.shape[0])
        return result
    finally:
        engine.stop()
        del engine, static


def graph_step_ms(static, batch: int, steps: int = 200) -> float:
    """The decode step alone (graph replay + argmax copy), rows 0..batch-1, no scheduler."""
    tokens, positions = [5] * batch, [100] * batch
    for _ in range(5):
        static.decode(tokens, positions).tokens[:batch].tolist()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        static.decode(tokens, positions).tokens[:batch].tolist()
    return 1000 * (time.perf_counter() - started) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="smollm2-135m,llama-3.2-1b")
    parser.add_argument("--batches", default="1,8,32,128")
    parser.add_argument("--paths", default="eager,static,cb,engine,serve")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--serve-ways",
        default="proxy,direct,router",
        help="how the serve path reaches the replica: proxy, direct, own, router",
    )
    parser.add_argument("--router-workers", type=int, default=1, help="`hybrid router serve --workers`")
    parser.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="serve path: processes the client sends each batch from, its rows dealt out among them",
    )
    parser.add_argument(
        "--stagger",
        action="store_true",
        help="engine and serve paths: answers of new/2 to 3new/2 tokens, so rows leave the batch at different steps",
    )
    parser.add_argument(
        "--gil-switch-intervals-ms",
        default="",
        help="serve path: one run per replica GIL switch interval given (comma-separated ms), each way named "
        "way@Nms; empty runs the replica's default once",
    )
    parser.add_argument(
        "--serve-serial",
        action="store_true",
        help="serve path: every way once more with the replica's decode steps not overlapped, named way@serial",
    )
    parser.add_argument("--out", default="cloud_decode.json")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import transformers

    batches = [int(b) for b in args.batches.split(",")]
    paths = args.paths.split(",")
    report = {
        "card": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "weights": "random (bf16); end tokens ignored",
        "stagger": args.stagger,
        "client_processes": args.client_processes,
        "results": {},
    }
    out = Path(args.out)
    for shape in args.shapes.split(","):
        vocab = SHAPES[shape]["vocab_size"]
        tokenizer = word_tokenizer(vocab)
        model = random_model(shape, "cuda")
        shape_results = report["results"].setdefault(shape, {})
        for batch in batches:
            ids = prompts(batch, args.prompt_tokens, vocab)
            row = shape_results.setdefault(str(batch), {})
            for path in paths:
                if path == "serve":
                    continue
                began = time.perf_counter()
                try:
                    if path == "eager":
                        row[path] = hf_generate(model, ids, args.new_tokens, args.repeats, static=False)
                    elif path == "static":
                        row[path] = hf_generate(model, ids, args.new_tokens, args.repeats, static=True)
                    elif path == "cb":
                        row[path] = hf_continuous(model, ids, args.new_tokens, args.repeats)
                    elif path in ("engine", "engine-serial"):
                        news = answer_lengths(batch, args.new_tokens, args.stagger)
                        overlap = path == "engine"
                        row[path] = engine_path(model, tokenizer, ids, news, args.repeats, max(batches), overlap)
                except Exception as error:  # one failing path must not lose the others' figures
                    row[path] = {"error": f"{type(error).__name__}: {error}"[:600]}
                    traceback.print_exc()
                row[path]["wall_s"] = time.perf_counter() - began
                print(shape, batch, path, {k: v for k, v in row[path].items() if k != "runs"}, flush=True)
                gc.collect()
                torch.cuda.empty_cache()
                out.write_text(json.dumps(report, indent=2))
        del model
        gc.collect()
        torch.cuda.empty_cache()
        if "serve" in paths and shape == "smollm2-135m":
            intervals = [float(v) for v in args.gil_switch_intervals_ms.split(",") if v] or [None]
            variants = [(interval, True) for interval in intervals]
            variants += [(None, False)] if args.serve_serial else []
            served = report["results"][shape].setdefault("serve", {})
            for interval, overlap in variants:
                suffix = ("" if interval is None else f"@{interval:g}ms") + ("" if overlap else "@serial")
                try:
                    ways = serve_path(
                        shape,
                        vocab,
                        batches,
                        args.prompt_tokens,
                        args.new_tokens,
                        args.repeats,
                        max(batches),
                        args.serve_ways.split(","),
                        args.router_workers,
                        args.stagger,
                        interval,
                        args.client_processes,
                        overlap,
                    )
                    served.update({f"{way}{suffix}" if isinstance(v, dict) else way: v for way, v in ways.items()})
                except Exception as error:
                    served[f"error{suffix}"] = f"{type(error).__name__}: {error}"[:600]
                    traceback.print_exc()
                print(shape, "serve", suffix, served, flush=True)
        out.write_text(json.dumps(report, indent=2))
    print_table(report)
    return 0


def print_table(report: dict) -> None:
    print(f"\n{report['card']}, torch {report['torch']}, transformers {report['transformers']}")
    for shape, rows in report["results"].items():
        print(f"\n{shape}: tokens/s (engine step ms)")
        for batch, row in rows.items():
            if batch == "serve":
                continue
            cells = []
            for path, result in row.items():
                if "tokens_per_s" in result:
                    extra = (
                        f" ({result['decode_step_ms']:.2f}/{result['graph_step_ms']:.2f} ms)"
                        if path.startswith("engine")
                        else ""
                    )
                    cells.append(f"{path} {result['tokens_per_s']:.0f}{extra}")
                else:
                    cells.append(f"{path} ERR")
            engine = row.get("engine", {}).get("tokens_per_s")
            for way, by_batch in rows.get("serve", {}).items():
                served = by_batch.get(batch, {}) if isinstance(by_batch, dict) else {}
                if "tokens_per_s" in served:
                    ratio = f" = {served['tokens_per_s'] / engine:.2f}x engine" if engine else ""
                    cells.append(f"serve/{way} {served['tokens_per_s']:.0f}{ratio}")
            print(f"  b{batch}: " + ", ".join(cells))


if __name__ == "__main__":
    raise SystemExit(main())
