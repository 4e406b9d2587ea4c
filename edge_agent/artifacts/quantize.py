"""The precisions an edge artifact can ship at, and the conversion of the fp32 ONNX export to each.

Two graphs:

- **optimum's export** (``int4``, ``int8``, ``fp16``, ``fp32``): the reference path. Integer recipes use ONNX
  Runtime's block-wise weight-only quantizer (MatMulNBits, round-to-nearest) on every weight MatMul.
  Activations and the attention MatMuls against the KV cache stay in float: quantizing those (optimum's
  dynamic INT8) makes step time grow with context and wrecks quality.
- **the lean decoder** (``lean-int4``, ``lean-int8``, ``lean-fp32``; ``lean_graph``): fused operators and a
  KV cache updated in place. ``lean-int4`` stores the projections at 4 bits in the offset form of ``blocks``
  (fitted rounding, integer zero points, exact for weights that came from Q4_1) and the head and embedding at
  8 bits: the k-quant idea of fewer bits where they cost least.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_agent.artifacts.lean_graph import LeanWeights
from edge_agent.artifacts.manifest import MODEL_FILE

# Bump when the export or quantization steps change, so that cached artifacts are rebuilt.
RECIPE_VERSION = 2


@dataclass(frozen=True)
class PrecisionRecipe:
    name: str
    bits: int | None = None
    block_size: int | None = None
    # Asymmetric blocks (a zero point each) fit weights that came from an asymmetric format such as Q4_1.
    is_symmetric: bool = True
    full_precision: bool = False
    # 4: int8 activations inside MatMulNBits (fastest CPU kernels); weights stay block-quantized.
    accuracy_level: int | None = None


@dataclass(frozen=True)
class LeanRecipe:
    """A lean decoder graph written from the checkpoint (``lean_graph``), its weights stored as ``weights`` says."""

    name: str
    weights: LeanWeights
    full_precision: bool = False
    graph: str = "lean"


RECIPES: dict[str, PrecisionRecipe | LeanRecipe] = {
    "int4": PrecisionRecipe("int4-b32", bits=4, block_size=32, accuracy_level=4),
    "int8": PrecisionRecipe("int8-b32", bits=8, block_size=32, accuracy_level=4),
    "fp16": PrecisionRecipe("fp16", full_precision=True),
    "fp32": PrecisionRecipe("fp32", full_precision=True),
    "lean-int4": LeanRecipe("lean-int4-b32", LeanWeights(projection_bits=4, head_bits=8)),
    "lean-int8": LeanRecipe("lean-int8-b32", LeanWeights(projection_bits=8, head_bits=8)),
    "lean-fp32": LeanRecipe("lean-fp32", LeanWeights(projection_bits=None, head_bits=None), full_precision=True),
    # For GPU edge nodes (the edge-gpu extra): CUDA's GroupQueryAttention runs in half precision only.
    "lean-int4-fp16": LeanRecipe(
        "lean-int4-b32-fp16", LeanWeights(projection_bits=4, head_bits=8, activations="float16")
    ),
}
# `auto` builds these, drops those that fail the gate and keeps the one that decodes fastest here.
# fp16 and lean-int4-fp16 are left out because ONNX Runtime's CPU provider has no fast fp16 kernels (the export
# measures speed here, on the CPU); optimum's int4 (fails the gate) and fp32 (a tenth of the lean graphs' speed)
# because they cannot win.
AUTO_ORDER = ("lean-int4", "lean-int8", "int8")
PRECISION_CHOICES = ("auto", *RECIPES)


def convert(model, recipe: PrecisionRecipe):
    """The ONNX model (a ModelProto) at the recipe's precision; fp32 comes back as it is."""
    if recipe.bits is not None:
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        config = DefaultWeightOnlyQuantConfig(
            block_size=recipe.block_size,
            is_symmetric=recipe.is_symmetric,
            accuracy_level=recipe.accuracy_level,
            bits=recipe.bits,
            op_types_to_quantize=("MatMul",),
        )
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=recipe.bits,
            block_size=recipe.block_size,
            is_symmetric=recipe.is_symmetric,
            accuracy_level=recipe.accuracy_level,
            algo_config=config,
            op_types_to_quantize=("MatMul",),
        )
        quantizer.process()
        return quantizer.model.model
    if recipe.name == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        return convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=True)
    return model


def build_lean(hf_dir: Path, recipe: LeanRecipe, out: Path) -> None:
    """Writes the lean decoder of the checkpoint in ``hf_dir`` at the recipe's precision into the folder ``out``."""
    from edge_agent.artifacts.lean_graph import write_lean_model

    write_lean_model(hf_dir, recipe.weights, out / MODEL_FILE)


def quantize(base: Path, recipe: PrecisionRecipe, out: Path) -> None:
    """Writes the model of the export folder ``base`` at the recipe's precision into the folder ``out``."""
    import onnx

    onnx.save(convert(onnx.load(str(base / MODEL_FILE)), recipe), str(out / MODEL_FILE))
