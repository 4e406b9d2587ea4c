"""Block-wise weight quantization in ONNX Runtime's MatMulNBits layout, with integer zero points only.

Weights are blocked along the input dimension K, one scale per block of ``block_size`` values of one output.
Two forms:

- **symmetric** (8 bits): ``w = scale * (q - 128)``, the scale from the block's largest magnitude. It holds a
  GGUF Q8_0 block exactly.
- **offset** (4 bits): ``w = scale * (q - 8) + offset``, the affine form of GGUF's Q4_1 and k-quants. The
  rounding is fitted, not taken from min and max alone: each block alternates between rounding to its grid and
  refitting scale and offset by least squares to the rounded levels (a few Lloyd iterations, which never do
  worse than round-to-nearest). MatMulNBits runs the ``scale * (q - 8)`` part with its default integer zero
  point; the offsets are applied outside it as ``blocksums(x) @ offsets``, a rank K/block_size correction that
  costs two small MatMuls. A weight that came from Q4_1 is held exactly, where an integer zero point alone
  would move each block's whole grid by up to half a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Lloyd iterations of the offset fit: the error stops improving after two or three on real weights.
OFFSET_FIT_ITERATIONS = 4


@dataclass
class PackedWeight:
    """One weight matrix as MatMulNBits inputs; ``offsets`` ([K/block, N]) only in the offset form."""

    packed: np.ndarray  # uint8 [N, K/block, block*bits/8]
    scales: np.ndarray  # float32 [N, K/block]
    bits: int
    block_size: int
    offsets: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.packed.shape[0]

    @property
    def k(self) -> int:
        return self.packed.shape[1] * self.block_size

    def dequantize(self) -> np.ndarray:
        """The [N, K] float32 weight this packing stands for (tests and error checks)."""
        levels = _unpack(self.packed, self.bits).astype(np.float32) - 2 ** (self.bits - 1)
        blocks = levels * self.scales[:, :, None]
        if self.offsets is not None:
            blocks = blocks + self.offsets.T[:, :, None]
        return blocks.reshape(self.n, self.k)


def _blocks(weight: np.ndarray, block_size: int) -> np.ndarray:
    """[N, K] (output rows, input columns) as [N, K/block, block]."""
    n, k = weight.shape
    if k % block_size:
        raise ValueError(f"input size {k} is not a multiple of the block size {block_size}")
    return weight.astype(np.float32).reshape(n, k // block_size, block_size)


def _pack(levels: np.ndarray, bits: int) -> np.ndarray:
    levels = levels.astype(np.uint8)
    if bits == 8:
        return levels
    if bits == 4:
        # Two levels a byte, the first in the low nibble (MatMulNBits' order along K).
        return levels[..., 0::2] | (levels[..., 1::2] << 4)
    raise ValueError(f"{bits}-bit packing is not supported: use 4 or 8")


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return packed
    low, high = packed & 0x0F, packed >> 4
    return np.stack([low, high], axis=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


def quantize_symmetric(weight: np.ndarray, bits: int = 8, block_size: int = 32) -> PackedWeight:
    """``w = scale * (q - 2^(bits-1))`` with the scale from each block's largest magnitude."""
    blocks = _blocks(weight, block_size)
    top = 2 ** (bits - 1) - 1
    scales = np.abs(blocks).max(axis=-1) / top
    safe = np.where(scales == 0, 1.0, scales)
    levels = np.clip(np.rint(blocks / safe[..., None]), -top, top) + 2 ** (bits - 1)
    return PackedWeight(_pack(levels, bits), scales.astype(np.float32), bits, block_size)


def quantize_offset(weight: np.ndarray, bits: int = 4, block_size: int = 32) -> PackedWeight:
    """``w = scale * (q - 2^(bits-1)) + offset`` per block, fitted by alternating rounding and least squares."""
    blocks = _blocks(weight, block_size).astype(np.float64)
    top = 2**bits - 1
    low, high = blocks.min(axis=-1), blocks.max(axis=-1)
    scales = (high - low) / top
    minimums = low.copy()
    levels = _round_to_grid(blocks, scales, minimums, top)
    for _ in range(OFFSET_FIT_ITERATIONS):
        scales, minimums = _refit(blocks, levels, scales, minimums)
        levels = _round_to_grid(blocks, scales, minimums, top)
    # MatMulNBits subtracts its default zero point 2^(bits-1); the offset takes it back.
    offsets = minimums + scales * 2 ** (bits - 1)
    return PackedWeight(
        _pack(levels, bits), scales.astype(np.float32), bits, block_size, offsets.T.astype(np.float32).copy()
    )


def _round_to_grid(blocks: np.ndarray, scales: np.ndarray, minimums: np.ndarray, top: int) -> np.ndarray:
    safe = np.where(scales == 0, 1.0, scales)
    return np.clip(np.rint((blocks - minimums[..., None]) / safe[..., None]), 0, top)


def _refit(
    blocks: np.ndarray, levels: np.ndarray, scales: np.ndarray, minimums: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares scale and minimum of each block for fixed levels; blocks of one level keep their fit."""
    size = blocks.shape[-1]
    sum_q, sum_w = levels.sum(-1), blocks.sum(-1)
    sum_qq, sum_qw = (levels * levels).sum(-1), (levels * blocks).sum(-1)
    determinant = size * sum_qq - sum_q * sum_q
    solvable = determinant > 0
    safe = np.where(solvable, determinant, 1.0)
    new_scales = np.where(solvable, (size * sum_qw - sum_q * sum_w) / safe, scales)
    new_minimums = np.where(solvable, (sum_w - new_scales * sum_q) / size, minimums)
    # A negative slope would flip the grid; such blocks keep the previous fit.
    keep = new_scales < 0
    return np.where(keep, scales, new_scales), np.where(keep, minimums, new_minimums)


def block_sum_matrix(k: int, block_size: int) -> np.ndarray:
    """[K, K/block] of ones and zeros: ``x @ it`` sums x over each block of K."""
    matrix = np.zeros((k, k // block_size), np.float32)
    matrix[np.arange(k), np.arange(k) // block_size] = 1.0
    return matrix
