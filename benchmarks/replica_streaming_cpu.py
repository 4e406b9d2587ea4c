"""What a cloud replica spends streaming its answers, on a CPU: a tiny random model (one layer, width 64) at a
full batch, so that the Python work around each decode step weighs as it does beside a GPU's few-ms step.

One run measures, one after the other: the engine alone with the fast tokenizer's own stream decoder and with
the Python ``decode`` wrapper, then the replica's own gRPC port (``cloud.replica_port``) answering a client in
another process, once per stream interval given. Random weights: the figures are about the serving path, never
the model. Example:

    python benchmarks/replica_streaming_cpu.py --batch 128 --new-tokens 128 --stream-intervals-ms 0,20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from decode_workload import prompts, summarize_tokens, word_tokenizer  # noqa: E402

VOCAB = 2048


class PythonDecodeOnly:
    """The tokenizer without its Rust backend in sight, so the text stream takes the ``decode`` path."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __getattr__(self, name: str):
        if name == "backend_tokenizer":
            raise AttributeError(name)
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)


def build_engine(tokenizer, batch: int, context: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    from cloud.engine import TorchEngine
    from cloud.model import StaticCacheLlama
    from hybrid.protocol import ServedBy, Tier

    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        vocab_size=VOCAB, max_position_embeddings=512, eos_token_id=0, pad_token_id=0, bos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    static = StaticCacheLlama(LlamaForCausalLM(config).eval(), max_batch=batch, max_context=context)
    return TorchEngine(
        static, tokenizer, served_by=ServedBy(Tier.PRIVATE, "bench", "local", "fp32-random"), model_name="bench",
        full_precision=True, end_ids=set(), max_wait_ms=0.0, max_queued_requests=4096,
    )  # fmt: skip


async def engine_alone(engine, texts: list[str], new: int) -> tuple[float, int]:
    from hybrid.protocol import GenerationRequest, Priority

    async def one(index: int, text: str) -> int:
        request = GenerationRequest(
            request_id=f"r{index}", model="", prompt=text, messages=None, max_new_tokens=new, temperature=0.0,
            top_p=1.0, seed=None, stop=[], priority=Priority.BATCH,
        )  # fmt: skip
        return sum([len(chunk.token_ids) async for chunk in engine.generate(request)])

    began = time.perf_counter()
    produced = await asyncio.gather(*(one(i, t) for i, t in enumerate(texts)))
    return time.perf_counter() - began, sum(produced)


async def joiner_first_tokens(engine, texts: list[str], new: int, pause_s: float) -> list[float]:
    """Each REALTIME probe's time to its first token (ms), sent one after another while the other ``texts`` stream
    ``new`` tokens each in the running batch: what a joiner of a busy batch waits."""
    from hybrid.protocol import GenerationRequest, Priority

    running = asyncio.ensure_future(engine_alone(engine, texts[:-1], new))
    while engine.load().active < len(texts) - 1:
        await asyncio.sleep(0.001)
    waits = []
    while not running.done():
        request = GenerationRequest(
            request_id=f"probe{len(waits)}", model="", prompt=texts[-1], messages=None, max_new_tokens=2,
            temperature=0.0, top_p=1.0, seed=None, stop=[], priority=Priority.REALTIME,
        )  # fmt: skip
        began = time.perf_counter()
        answer = engine.generate(request)
        await answer.__anext__()
        waits.append((time.perf_counter() - began) * 1000)
        async for _ in answer:
            pass
        await asyncio.sleep(pause_s)
    await running
    return waits


def client(address: str, texts: list[str], new: int, results) -> None:
    from hybrid.client import AsyncHybridClient, build_request

    async def read(call) -> list:
        return [message async for message in call]

    async def run() -> tuple[float, int, int]:
        async with AsyncHybridClient(address, timeout_s=600) as hybrid:
            began = time.perf_counter()
            calls = [hybrid.stub.Generate(build_request(prompt=t, max_new_tokens=new), timeout=600) for t in texts]
            messages = await asyncio.gather(*(read(call) for call in calls))
            seconds = time.perf_counter() - began
        return seconds, sum(len(m.token_ids) for ms in messages for m in ms), sum(len(ms) for ms in messages)

    results.put(asyncio.run(run()))


def measure(args: argparse.Namespace) -> dict:
    from cloud.replica_port import ReplicaPort

    tokenizer = word_tokenizer(VOCAB)
    texts = [tokenizer.decode(row) for row in prompts(args.batch, args.prompt_tokens, VOCAB).tolist()]
    context = args.prompt_tokens + args.new_tokens + 8
    results: dict = {}
    for name, used in (("engine, stream decoder", tokenizer), ("engine, Python decode", PythonDecodeOnly(tokenizer))):
        engine = build_engine(used, args.batch, context)
        engine.start()
        try:
            asyncio.run(engine_alone(engine, texts, args.new_tokens))  # warm-up
            runs = [asyncio.run(engine_alone(engine, texts, args.new_tokens)) for _ in range(args.repeats)]
            results[name] = summarize_tokens([s for s, _ in runs], runs[0][1])
        finally:
            engine.stop()
        print(name, f"{results[name]['tokens_per_s']:.0f} tok/s", flush=True)
    if args.joiners:
        engine = build_engine(tokenizer, args.batch, context)
        engine.start()
        try:
            asyncio.run(engine_alone(engine, texts, args.new_tokens))  # warm-up
            steps_before, seconds_before = engine.decode_steps, engine.decode_seconds
            waits = [
                w
                for _ in range(args.repeats)
                for w in asyncio.run(joiner_first_tokens(engine, texts, args.new_tokens, 0.01))
            ]
            step_ms = (engine.decode_seconds - seconds_before) / max(1, engine.decode_steps - steps_before) * 1000
        finally:
            engine.stop()
        waits.sort()
        results["joiner, time to first token"] = {
            "probes": len(waits),
            "p50_ms": waits[len(waits) // 2],
            "p90_ms": waits[int(len(waits) * 0.9)],
            "decode_step_ms": step_ms,
        }
        print(
            f"a joiner's first token: p50 {waits[len(waits) // 2]:.1f} ms over {len(waits)} probes; a step {step_ms:.1f} ms"
        )
    spawn = multiprocessing.get_context("spawn")
    for interval in [float(v) for v in args.stream_intervals_ms.split(",")]:
        engine = build_engine(tokenizer, args.batch, context)
        engine.start()
        port = ReplicaPort(engine, "bench", 0, stream_interval_ms=interval)
        try:
            runs = []
            for _ in range(args.repeats + 1):  # the first warms up
                queue = spawn.Queue()
                sender = spawn.Process(target=client, args=(f"127.0.0.1:{port.port}", texts, args.new_tokens, queue))
                sender.start()
                runs.append(queue.get())
                sender.join()
            name = f"own port, stream interval {interval:g} ms"
            results[name] = summarize_tokens([s for s, _, _ in runs[1:]], runs[1][1])
            results[name]["messages_per_answer"] = runs[1][2] / args.batch
        finally:
            port.stop(1)
            engine.stop()
        print(name, f"{results[name]['tokens_per_s']:.0f} tok/s", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-intervals-ms", default="0,20", help="the own port's stream intervals to measure")
    parser.add_argument(
        "--joiners", action="store_true", help="also time REALTIME joiners' first tokens while a full batch streams"
    )
    parser.add_argument("--out", default="replica_streaming_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = measure(args)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(["python", *sys.argv]),
        "weights": "random (one layer, width 64)",
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    base = results["engine, stream decoder"]["tokens_per_s"]
    for name, figures in results.items():
        if "tokens_per_s" not in figures:
            continue
        extra = f", {figures['messages_per_answer']:.0f} messages an answer" if "messages_per_answer" in figures else ""
        print(f"{name}: {figures['tokens_per_s']:.0f} tok/s = {figures['tokens_per_s'] / base:.2f}x{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
