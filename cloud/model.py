"""A llama-architecture decoder for continuous batching, with a preallocated KV cache and CUDA graphs.

Weights come from a transformers model (any llama-shaped ``*ForCausalLM``: SmolLM2, Llama 3.x);
the forward pass is written out here because continuous batching needs what transformers' caches do
not give together: one cache row ("slot") per running sequence, each at its own length, rows that
join and leave between steps, and a decode step whose shapes are static so that it can be captured
once as a CUDA graph and replayed with a single launch.

Layout. The cache holds ``[layers, slots, kv_heads, length, head_dim]`` for keys and for values.
Running sequence ``i`` lives in slot ``i``; token ``t`` of a sequence is at position ``t`` (no
padding inside a row). Rows that leave are filled by the last rows (one copy per row that left), so the
running batch is always slots ``0..B-1`` and attention reads a view of the cache, never a gathered copy.

Decode. Each step feeds one token per row at the row's own position. Batch sizes are rounded up to
a bucket (1, 2, 4, ... ``max_batch``) and the attended length to a power of two, so a handful of
graphs covers every step; rows beyond the live batch compute garbage into free slots, which the
next prefill overwrites. Greedy picks (argmax) happen inside the graph, so only B token ids cross
to the host per step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

log = logging.getLogger(__name__)

# Shortest attended length of a decode graph; lengths double from here.
_MIN_LENGTH_BUCKET = 64
# Shortest prompt the prefill warm-up runs; lengths double from here.
_MIN_WARM_LENGTH = 16
# Prefill's attention kernels. cuDNN's (what SDPA picks on Hopper for grouped heads) builds a plan for each
# new (rows, length) shape, about 45 ms of host time on an H200 that every running row waits out, and a
# burst brings a new shape with nearly every prefill; flash attention has no per-shape build.
PREFILL_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: torch.Tensor  # [(heads + 2 * kv_heads) * head_dim, hidden]
    qkv_bias: torch.Tensor | None
    out: torch.Tensor  # [hidden, heads * head_dim]
    post_norm: torch.Tensor
    gate_up: torch.Tensor  # [2 * intermediate, hidden]
    down: torch.Tensor  # [hidden, intermediate]


@dataclass
class StepOutput:
    logits: torch.Tensor  # [bucket, vocab]
    tokens: torch.Tensor  # [bucket] greedy picks


def _doublings(low: int, high: int) -> list[int]:
    """low, 2 low, 4 low, ... up to and including high."""
    sizes = [min(low, high)]
    while sizes[-1] < high:
        sizes.append(min(sizes[-1] * 2, high))
    return sizes


def batch_buckets(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to and including max_batch."""
    return _doublings(1, max_batch)


class StaticCacheLlama:
    def __init__(
        self,
        hf_model,
        max_batch: int,
        max_context: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        cuda_graphs: bool | None = None,
    ):
        config = hf_model.config
        if getattr(config, "hidden_act", "silu") != "silu":
            raise ValueError(f"only SiLU-gated llama MLPs are supported, this model uses {config.hidden_act!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.cuda_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        self.hidden = config.hidden_size
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or self.hidden // self.heads
        self.eps = config.rms_norm_eps
        self.vocab = config.vocab_size
        self.max_batch = max_batch
        self.max_context = max_context
        self.buckets = batch_buckets(max_batch)
        self.slots = self.buckets[-1]
        self._load_weights(hf_model)
        self._init_cache(hf_model.model.rotary_emb)
        self._prepare_graphs()

    def _load_weights(self, hf_model) -> None:
        """Copies the weights onto the device, fusing q/k/v and gate/up so each is one matmul."""

        def take(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(self.device, self.dtype).contiguous()

        body = hf_model.model
        self.embed = take(body.embed_tokens.weight)
        lm_head = hf_model.get_output_embeddings().weight
        self.lm_head = self.embed if lm_head is body.embed_tokens.weight else take(lm_head)
        self.final_norm = take(body.norm.weight)
        self.layers: list[_Layer] = []
        for layer in body.layers:
            attn, mlp = layer.self_attn, layer.mlp
            biases = [p.bias for p in (attn.q_proj, attn.k_proj, attn.v_proj)]
            self.layers.append(
                _Layer(
                    input_norm=take(layer.input_layernorm.weight),
                    qkv=take(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])),
                    qkv_bias=take(torch.cat(biases)) if all(b is not None for b in biases) else None,
                    out=take(attn.o_proj.weight),
                    post_norm=take(layer.post_attention_layernorm.weight),
                    gate_up=take(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                    down=take(mlp.down_proj.weight),
                )
            )

    def _init_cache(self, rotary) -> None:
        """An empty cache and rotary table (``_ensure_length`` sizes them) and the decode graphs' inputs."""
        self._rotary = rotary
        self._cos = self._sin = torch.empty(0)
        self._length = 0
        self.k_cache = self.v_cache = torch.empty(0)
        # Static inputs of the decode graphs: token ids and positions side by side, so that one copy from
        # one pinned host buffer feeds a step. A copy from pageable memory blocks the engine thread, and
        # each blocking call hands the GIL to the server's threads, which keep it for a switch interval.
        self._step_inputs = torch.zeros(2, self.slots, dtype=torch.long, device=self.device)
        self._ids, self._positions = self._step_inputs[0], self._step_inputs[1]
        self._host_inputs = torch.zeros(2, self.slots, dtype=torch.long, pin_memory=self.device.type == "cuda")
        self._host_view = self._host_inputs.numpy()
        # The same for compaction's row moves: targets and sources. Reused once the engine has read a step back,
        # which waits for every copy queued before it.
        self._moves = torch.zeros(2, self.slots, dtype=torch.long, device=self.device)
        self._host_moves = torch.zeros(2, self.slots, dtype=torch.long, pin_memory=self.device.type == "cuda")
        self._host_moves_view = self._host_moves.numpy()
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, StepOutput]] = {}
        self._pool = None

    def _prepare_graphs(self) -> None:
        """Sizes the cache and, with CUDA graphs, captures every decode graph up front."""
        if self.cuda_graphs:
            # A graph captured while serving stalls every running row for the capture (a burst is when
            # batch sizes and lengths first meet), and a cache that grows drops them all. So on a GPU the
            # cache spans the context window from the start (SmolLM2-135M, 32 slots, 2048 positions:
            # 1.5 GB) and every batch and length bucket is captured now.
            self._ensure_length(self.max_context)
            self._capture_all()
        else:
            self._ensure_length(min(_MIN_LENGTH_BUCKET * 4, self.max_context))

    # --- cache --------------------------------------------------------------------------------

    def _ensure_length(self, needed: int) -> None:
        """Grows the cache (by doubling) to hold ``needed`` positions; memory follows the longest sequence."""
        if needed <= self._length:
            return
        if needed > self.max_context:
            raise ValueError(f"{needed} positions exceed the context window of {self.max_context}")
        length = max(self._length, _MIN_LENGTH_BUCKET)
        while length < needed:
            length *= 2
        length = min(length, self.max_context)
        shape = (len(self.layers), self.slots, self.kv_heads, length, self.head_dim)
        k_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        v_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        if self._length:
            k_cache[:, :, :, : self._length].copy_(self.k_cache)
            v_cache[:, :, :, : self._length].copy_(self.v_cache)
        self.k_cache, self.v_cache, self._length = k_cache, v_cache, length
        # transformers' own rotary module computes the table, so every RoPE scaling it knows is honoured.
        home = self._rotary.inv_freq.device
        with torch.no_grad():
            cos, sin = self._rotary(torch.zeros(1, device=home), torch.arange(length, device=home)[None])
        half = self.head_dim // 2
        self._cos = cos[0].to(self.device, self.dtype)
        self._sin = torch.cat((-sin[0, :, :half], sin[0, :, half:]), dim=-1).to(self.device, self.dtype)
        # Captured graphs point at the old tensors.
        self._graphs.clear()

    def move_rows(self, sources: list[int], lengths: list[int]) -> None:
        """Compacts the cache: the row in slot ``sources[i]`` moves to slot ``i``. A slot written to is one whose
        row left, so every move reads a row nothing else overwrites; all of them go in one gather per cache."""
        moves = [
            (target, source, length)
            for target, (source, length) in enumerate(zip(sources, lengths))
            if source != target
        ]
        if not moves:
            return
        # Through the pinned buffer, as a step's inputs: a copy from pageable memory would wait for the decode
        # step the engine has in flight, which this move is queued behind anyway.
        count = len(moves)
        self._host_moves_view[0, :count] = [m[0] for m in moves]
        self._host_moves_view[1, :count] = [m[1] for m in moves]
        self._moves[:, :count].copy_(self._host_moves[:, :count], non_blocking=True)
        targets, froms = self._moves[0, :count], self._moves[1, :count]
        length = max(m[2] for m in moves)
        for cache in (self.k_cache, self.v_cache):
            cache[:, targets, :, :length] = cache[:, froms, :, :length]

    # --- forward --------------------------------------------------------------------------------

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x*cos + rotate_half(x)*sin, with rotate_half(x) = cat(-x2, x1) folded into a roll and a
        # sine table whose first half is negated: three kernels instead of five.
        return torch.addcmul(x * cos, x.roll(self.head_dim // 2, dims=-1), sin)

    @staticmethod
    def _add_linear(x: torch.Tensor, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x + h @ weight.T; one fused kernel for the 2-D decode shapes."""
        if x.dim() == 2:
            return torch.addmm(x, h, weight.t())
        return x + F.linear(h, weight)

    def _qkv(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        h = F.rms_norm(x, (self.hidden,), layer.input_norm, self.eps)
        return F.linear(h, layer.qkv, layer.qkv_bias)

    def _mlp_residual(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        h = F.rms_norm(x, (self.hidden,), layer.post_norm, self.eps)
        gate, up = F.linear(h, layer.gate_up).chunk(2, dim=-1)
        return self._add_linear(x, F.silu(gate) * up, layer.down)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.rms_norm(x, (self.hidden,), self.final_norm, self.eps), self.lm_head)

    @torch.no_grad()
    def prefill(self, prompts: list[list[int]], first_slot: int) -> torch.Tensor:
        """Runs the prompts into slots first_slot.. and returns the logits of each one's last token ([n, vocab])."""
        n, longest = len(prompts), max(len(p) for p in prompts)
        if first_slot + n > self.slots:
            raise ValueError(f"{first_slot + n} rows exceed the {self.slots} cache slots")
        self._ensure_length(longest)
        ids = torch.zeros(n, longest, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt)] = torch.tensor(prompt)
        ids = ids.to(self.device)
        last = torch.tensor([len(p) - 1 for p in prompts], device=self.device)
        heads, kv, d = self.heads, self.kv_heads, self.head_dim
        cos, sin = self._cos[:longest], self._sin[:longest]
        slots = slice(first_slot, first_slot + n)
        x = F.embedding(ids, self.embed)
        with sdpa_kernel(PREFILL_ATTENTION):
            for index, layer in enumerate(self.layers):
                qkv = self._qkv(layer, x).view(n, longest, heads + 2 * kv, d).transpose(1, 2)
                qk = self._rope(qkv[:, : heads + kv], cos, sin)
                q, k, v = qk[:, :heads], qk[:, heads:], qkv[:, heads + kv :]
                # Right padding: a real token only attends to earlier positions, all real, so the causal
                # mask alone is enough; what padding writes past a prompt's end is overwritten by decode.
                self.k_cache[index, slots, :, :longest].copy_(k)
                self.v_cache[index, slots, :, :longest].copy_(v)
                if kv != heads:  # flash attention takes equal head counts; SDPA's enable_gqa would pick cuDNN
                    k, v = k.repeat_interleave(heads // kv, dim=1), v.repeat_interleave(heads // kv, dim=1)
                attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                x = x + F.linear(attended.transpose(1, 2).reshape(n, longest, heads * d), layer.out)
                x = self._mlp_residual(layer, x)
        return self._logits(x[torch.arange(n, device=self.device), last])

    @torch.no_grad()
    def warm_prefill(self, max_tokens: int) -> list[tuple[int, int]]:
        """Runs one prefill of each shape (rows in the batch buckets, lengths doubling from 16 up to the context
        window) of at most ``max_tokens`` tokens, and returns the shapes it ran.

        A fresh process loads each kernel, and grows its memory pool, when a prefill first needs them, and the
        running rows wait behind that prefill; a burst is when a fresh replica first meets large prefills. What
        the warm-up writes lands in free slots, which a sequence's own prefill overwrites before anything reads
        them."""
        shapes = [
            (rows, length)
            for rows in self.buckets
            for length in _doublings(_MIN_WARM_LENGTH, self.max_context)
            if rows * length <= max_tokens
        ]
        for rows, length in shapes:
            self.prefill([[0] * length] * rows, first_slot=0).argmax(dim=-1).tolist()
        return shapes

    def _decode_body(self, batch: int, length: int) -> StepOutput:
        heads, kv, d = self.heads, self.kv_heads, self.head_dim
        group = heads // kv
        ids, positions = self._ids[:batch], self._positions[:batch]
        rows = torch.arange(batch, device=self.device)
        cos, sin = self._cos[positions][:, None], self._sin[positions][:, None]
        # A row attends to its own positions 0..p; shape [batch, 1, 1, length] broadcasts over heads.
        visible = (torch.arange(length, device=self.device)[None] <= positions[:, None])[:, None, None]
        x = F.embedding(ids, self.embed)
        for index, layer in enumerate(self.layers):
            qkv = self._qkv(layer, x).view(batch, heads + 2 * kv, d)
            qk = self._rope(qkv[:, : heads + kv], cos, sin)
            self.k_cache[index, rows, :, positions] = qk[:, heads:]
            self.v_cache[index, rows, :, positions] = qkv[:, heads + kv :]
            # The query heads of one KV group become that group's query rows: no repeated keys.
            q = qk[:, :heads].reshape(batch, kv, group, d)
            keys = self.k_cache[index, :batch, :, :length]
            values = self.v_cache[index, :batch, :, :length]
            attended = F.scaled_dot_product_attention(q, keys, values, attn_mask=visible)
            x = self._add_linear(x, attended.reshape(batch, heads * d), layer.out)
            x = self._mlp_residual(layer, x)
        logits = self._logits(x)
        return StepOutput(logits=logits, tokens=logits.argmax(dim=-1))

    def _length_bucket(self, needed: int) -> int:
        length = _MIN_LENGTH_BUCKET
        while length < needed:
            length *= 2
        return min(length, self._length)

    @torch.no_grad()
    def decode(self, tokens: list[int], positions: list[int]) -> StepOutput:
        """One decode step for rows 0..B-1: feeds tokens[i] at positions[i]. Outputs cover the bucket; use [:B]."""
        batch = len(tokens)
        self._ensure_length(max(positions) + 1)
        bucket = next(b for b in self.buckets if b >= batch)
        length = self._length_bucket(max(positions) + 1)
        # The host buffer is free again: the caller read the previous step's outputs, which waited for it.
        host = self._host_view
        host[0, :batch] = tokens
        host[1, :batch] = positions
        host[1, batch:bucket] = 0
        self._step_inputs[:, :bucket].copy_(self._host_inputs[:, :bucket], non_blocking=True)
        if not self.cuda_graphs:
            return self._decode_body(bucket, length)
        key = (bucket, length)
        if key not in self._graphs:
            self._graphs[key] = self._capture(bucket, length)
        graph, output = self._graphs[key]
        graph.replay()
        return output

    def _capture_all(self) -> None:
        started = time.monotonic()
        lengths = sorted({self._length_bucket(n) for n in range(1, self._length + 1, _MIN_LENGTH_BUCKET)})
        for length in lengths:
            for bucket in self.buckets:
                self._graphs[(bucket, length)] = self._capture(bucket, length)
        log.info("captured %d decode graphs in %.1f s", len(self._graphs), time.monotonic() - started)

    def _capture(self, batch: int, length: int) -> tuple[torch.cuda.CUDAGraph, StepOutput]:
        # Warm-up and capture run the step on the live inputs, so what they write to the cache is
        # exactly what the replay writes: capturing mid-serving is safe.
        stream = torch.cuda.Stream(device=self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._decode_body(batch, length)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self._pool):
            output = self._decode_body(batch, length)
        log.debug("captured the decode step for batch %d, length %d", batch, length)
        return graph, output
