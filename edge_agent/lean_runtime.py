"""ONNX Runtime over the lean decoder graph (``edge_agent.artifacts.lean_graph``): rows live in slots.

Each layer's keys and values live in one preallocated buffer [slots, kv_heads, capacity, head_dim] that
GroupQueryAttention reads and updates in place: past and present are bound to the same memory, so a step
copies nothing but one token per row. A sequence keeps its slot for its whole life; a decode step binds the
slots from 0 to the highest in use, and a free slot among them sits the step out (its one position is padding
past its end, which nothing reads), so nothing moves when a row leaves. A prompt is prefilled in its own
slot in chunks of ``prefill_chunk`` tokens through the same graph: its first chunk together with prompts in
neighbouring slots of like length, the rest one row a call.

On the CPU the buffers are numpy arrays that grow (slots, and capacity in 64-token steps, at least doubling)
as the batch and the contexts need them, a joiner reserving its answer's room at prefill; on CUDA they are
device memory allocated once for ``max_slots`` x ``max_context``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_agent.artifacts.lean_graph import LEAN_METADATA_KEY
from edge_agent.runtime import check_placement, pick_providers, session_options

# Tokens a prompt is fed in per call: long enough for MatMulNBits to run at GEMM speed, short enough that a
# long prompt does not hold the running batch's next step for long.
DEFAULT_PREFILL_CHUNK = 256
# Joiners in neighbouring slots are prefilled in one call unless padding to the longest would add more than
# this fraction of work: one call of 16 prompts ran 1.3-1.8x faster than 16 calls on 2 cores.
_PREFILL_PADDING_ALLOWANCE = 0.25
# ... and unless the call would hold more tokens than this: the activations of one call are the runtime's
# peak memory beside its weights and cache.
_PREFILL_TOKENS_PER_CALL = 512
# The CPU buffers grow in steps of this many tokens a slot, at least doubling each time.
_CAPACITY_STEP = 64


class LeanDecoder:
    def __init__(
        self,
        model_path: Path,
        num_threads: int | None = None,
        providers: list[str] | None = None,
        max_slots: int = 32,
        max_context: int = 2048,
        prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
        device: str = "auto",
    ):
        self.providers = providers or pick_providers(device=device)
        self.session = ort.InferenceSession(
            str(model_path), sess_options=session_options(num_threads, spinning=True), providers=self.providers
        )
        self.device = check_placement(self.session, self.providers, device)
        metadata = self.session.get_modelmeta().custom_metadata_map
        if LEAN_METADATA_KEY not in metadata:
            raise ValueError(f"{model_path} is not a lean decoder graph (no {LEAN_METADATA_KEY} metadata)")
        shape = json.loads(metadata[LEAN_METADATA_KEY])
        self.num_layers = int(shape["layers"])
        self.kv_heads = int(shape["kv_heads"])
        self.head_dim = int(shape["head_dim"])
        self.vocab_size = int(shape["vocab"])
        self.max_positions = int(shape["max_positions"])
        self.max_slots = max_slots
        self.max_context = min(max_context, self.max_positions)
        self.prefill_chunk = prefill_chunk
        self.cache_names = [f"{i}.{kind}" for i in range(self.num_layers) for kind in ("key", "value")]
        past = {i.name: i.type for i in self.session.get_inputs()}[f"past_key_values.{self.cache_names[0]}"]
        self.cache_dtype = np.float16 if past == "tensor(float16)" else np.float32
        self.slots = 0
        self.capacity = 0
        self._buffers: list = []
        if self.device == "cuda":
            self._allocate_device(max_slots, self.max_context)

    # --- cache buffers ---------------------------------------------------------------------------------

    def _allocate_device(self, slots: int, capacity: int) -> None:
        shape = [slots, self.kv_heads, capacity, self.head_dim]
        self._buffers = [
            ort.OrtValue.ortvalue_from_shape_and_type(shape, self.cache_dtype, "cuda", 0) for _ in self.cache_names
        ]
        self.slots, self.capacity = slots, capacity

    def reserve(self, slots: int, length: int) -> None:
        """Makes room for ``slots`` slots of ``length`` tokens each (the CPU buffers grow, keeping their rows)."""
        if slots > self.max_slots or length > self.max_context:
            raise ValueError(
                f"{slots} slots of {length} tokens exceed this runtime's {self.max_slots} slots of "
                f"{self.max_context} tokens"
            )
        if slots <= self.slots and length <= self.capacity:
            return
        if self.device == "cuda":
            raise AssertionError("device buffers are allocated at their full size")
        new_slots = min(self.max_slots, max(slots, self.slots * 2, 1))
        new_capacity = self.capacity
        if length > self.capacity:
            # What is asked for, in whole 64-token steps, or twice what there was: growing copies every slot.
            rounded = -(-length // _CAPACITY_STEP) * _CAPACITY_STEP
            new_capacity = min(self.max_context, max(rounded, 2 * self.capacity))
        grown = []
        for old in self._buffers or [None] * len(self.cache_names):
            buffer = np.zeros((new_slots, self.kv_heads, new_capacity, self.head_dim), self.cache_dtype)
            if old is not None:
                buffer[: old.shape[0], :, : old.shape[2]] = old
            grown.append(buffer)
        self._buffers = grown
        self.slots, self.capacity = new_slots, new_capacity

    def _pointer(self, buffer, first_slot: int) -> int:
        base = buffer.ctypes.data if isinstance(buffer, np.ndarray) else buffer.data_ptr()
        slot_bytes = self.kv_heads * self.capacity * self.head_dim * np.dtype(self.cache_dtype).itemsize
        return base + first_slot * slot_bytes

    # --- steps -------------------------------------------------------------------------------------

    def run(
        self,
        first_slot: int,
        ids: np.ndarray,
        new_tokens: np.ndarray,
        lengths_after: np.ndarray,
        logit_rows: np.ndarray,
    ) -> np.ndarray:
        """One call over the slots ``first_slot ..``: ``ids`` [rows, S] right-padded, ``new_tokens`` valid in
        each row, ``lengths_after`` each row's cached tokens after the call; returns the logits of ``logit_rows``
        (flat indices into rows x S).

        GroupQueryAttention takes several rows of several tokens only as their first chunk (every row's cache
        empty); a later chunk goes one row a call, and a decode step (one token a row) any number of rows."""
        rows, width = ids.shape
        lengths_before = lengths_after - new_tokens
        first_chunk = not lengths_before.any()
        if rows > 1 and width > 1 and not first_chunk:
            raise ValueError("a chunk after a prompt's first goes one row a call: GroupQueryAttention takes no more")
        self.reserve(first_slot + rows, int(lengths_before.max()) + width)
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(ids, dtype=np.int64))
        if first_chunk:
            # GroupQueryAttention's prompt mode: each row's valid tokens from position 0, right-padded to S.
            seqlens_k, total = np.maximum(new_tokens, 1) - 1, width
        else:
            # Every row writes all S positions: a row that sits a decode step out (no new token) writes padding
            # past its end, which no valid token attends to and its next call overwrites.
            seqlens_k, total = lengths_before + width - 1, self.capacity
        binding.bind_cpu_input("seqlens_k", np.ascontiguousarray(seqlens_k, dtype=np.int32))
        binding.bind_cpu_input("total_sequence_length", np.array(total, np.int32))
        binding.bind_cpu_input("logit_rows", np.ascontiguousarray(logit_rows, dtype=np.int64))
        # Outputs come back in the order they were bound: logits first.
        binding.bind_output("logits", "cpu")
        shape = [rows, self.kv_heads, self.capacity, self.head_dim]
        for name, buffer in zip(self.cache_names, self._buffers):
            pointer = self._pointer(buffer, first_slot)
            binding.bind_input(f"past_key_values.{name}", self.device, 0, self.cache_dtype, shape, pointer)
            binding.bind_output(f"present.{name}", self.device, 0, self.cache_dtype, shape, pointer)
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()

    def prefill(self, slot: int, prompt: list[int], all_logits: bool = False) -> np.ndarray:
        """Feeds ``prompt`` into the empty ``slot`` in chunks; the last token's logits [vocab], or every token's."""
        if len(prompt) > self.max_context:
            raise ValueError(f"a prompt of {len(prompt)} tokens exceeds the {self.max_context}-token context")
        self.reserve(slot + 1, len(prompt))
        kept = self._feed(slot, prompt, 0, all_logits)
        return np.concatenate(kept) if all_logits else kept[-1][0]

    def _feed(self, slot: int, prompt: list[int], start: int, all_logits: bool = False) -> list[np.ndarray]:
        """Feeds ``prompt[start:]`` into ``slot`` (which holds the tokens before ``start``) in chunks, one row a
        call; each chunk's logits: of every token, or of its last."""
        kept = []
        for begin in range(start, len(prompt), self.prefill_chunk):
            chunk = prompt[begin : begin + self.prefill_chunk]
            rows = np.arange(len(chunk)) if all_logits else np.array([len(chunk) - 1])
            kept.append(self.run(slot, np.array([chunk]), np.array([len(chunk)]), np.array([begin + len(chunk)]), rows))
        return kept

    def prefill_many(self, slots: list[int], prompts: list[list[int]], room: int = 0) -> np.ndarray:
        """Feeds each prompt into its empty slot; returns each one's last-token logits [len(prompts), vocab].

        Prompts in neighbouring slots share their first chunk's call; what is longer goes on one row a call.
        ``room``: tokens the answers will add, reserved now so that the buffers need not grow (and be copied)
        while they are decoded."""
        for prompt in prompts:
            if len(prompt) > self.max_context:
                raise ValueError(f"a prompt of {len(prompt)} tokens exceeds the {self.max_context}-token context")
        longest = max(len(p) for p in prompts)
        self.reserve(max(slots) + 1, min(self.max_context, max(longest + room, self.capacity)))
        logits = np.empty((len(prompts), self.vocab_size), np.float32)
        for group in _prefill_groups(slots, prompts, self.prefill_chunk):
            lengths = np.array([len(prompts[i]) for i in group])
            width = int(min(self.prefill_chunk, lengths.max()))
            new_tokens = np.minimum(lengths, width)
            ids = np.zeros((len(group), width), np.int64)
            for row, index in enumerate(group):
                ids[row, : new_tokens[row]] = prompts[index][:width]
            out = self.run(slots[group[0]], ids, new_tokens, new_tokens, np.arange(len(group)) * width + new_tokens - 1)
            for row, index in enumerate(group):
                rest = self._feed(slots[index], prompts[index], width) if lengths[row] > width else None
                logits[index] = rest[-1][0] if rest else out[row]
        return logits

    def decode(self, slots: list[int], tokens: list[int], lengths_before: list[int]) -> np.ndarray:
        """One token for each of ``slots`` (whose caches hold ``lengths_before`` tokens); logits [len(slots), vocab]."""
        width = max(slots) + 1
        ids = np.zeros((width, 1), np.int64)
        new_tokens = np.zeros(width, np.int32)
        lengths = np.ones(width, np.int64)
        ids[slots, 0] = tokens
        new_tokens[slots] = 1
        lengths[slots] = np.asarray(lengths_before) + 1
        return self.run(0, ids, new_tokens, lengths, np.asarray(slots, np.int64))


def _prefill_groups(slots: list[int], prompts: list[list[int]], chunk: int) -> list[list[int]]:
    """Indices of prompts to prefill together: neighbouring slots of similar lengths, in slot order."""
    groups: list[list[int]] = []
    for index in sorted(range(len(slots)), key=slots.__getitem__):
        group = groups[-1] if groups else None
        if group and slots[index] == slots[group[-1]] + 1:
            # What the shared first chunk holds of each prompt.
            lengths = [min(len(prompts[i]), chunk) for i in (*group, index)]
            per_call = len(lengths) * max(lengths)
            if per_call <= (1 + _PREFILL_PADDING_ALLOWANCE) * sum(lengths) and per_call <= _PREFILL_TOKENS_PER_CALL:
                group.append(index)
                continue
        groups.append([index])
    return groups
