"""The lean decoder graph: a Llama-family decoder written straight from its weights with ONNX Runtime's fused
operators, for the edge agent's slot runtime (``edge_agent.lean_runtime``).

Per layer: SkipSimplifiedLayerNormalization (residual add and RMS norm in one), one fused QKV projection,
GroupQueryAttention (rotary inside, the KV cache in one preallocated buffer per layer that it updates in
place), the output projection, a second SkipSimplifiedLayerNormalization, one fused gate-and-up projection,
SiLU and the down projection; about a dozen operators a layer where optimum's export runs over a hundred.
Projections and the untied output head are MatMulNBits (plain MatMul in the fp32 graph); the embedding is a
GatherBlockQuantized over the head's own 8-bit blocks, so the two share one copy of the table.

The graph's interface, every call prefill or decode:

- ``input_ids`` [B, S] int64: a right-padded chunk of each row's next tokens;
- ``seqlens_k`` [B] int32 and ``total_sequence_length`` [] int32, in GroupQueryAttention's two modes:
  - a prompt's first chunk (every row's cache empty): each row's valid tokens minus one, and S;
  - any later call: each row's cached length before the call plus S, minus one, and the cache capacity.
    Every row writes all S positions, so a row that sits a decode step out writes padding past its end, which
    nothing attends to and its next token overwrites; and several rows of several tokens cannot share such
    a call (ONNX Runtime refuses it), so a later chunk goes one row a call. Per-row query lengths would lift
    both limits, but ONNX Runtime has them only from 1.32, and onnxruntime-gpu stops at 1.31;
- ``logit_rows`` [R] int64: which of the B*S positions get logits (the last valid one of each row when
  serving, all of them for the quality gate);
- ``past_key_values.{i}.key|value`` [B, kv_heads, capacity, head_dim], bound to the same memory as the
  outputs ``present.{i}.key|value``;
- out: ``logits`` [R, vocab].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.artifacts.blocks import PackedWeight, block_sum_matrix, quantize_offset, quantize_symmetric

# Metadata key of the model's shapes, read by the runtime.
LEAN_METADATA_KEY = "hybrid.lean_decoder"
# Bump when the graph changes, so that cached lean artifacts are rebuilt; artifacts record it in their recipe.
LEAN_GRAPH_VERSION = 3
# An input of version 2's graph that version 3 dropped: it dates an artifact exported before the version was
# recorded.
_VERSION_2_INPUT = b"query_seqlens"
_MS = "com.microsoft"


def outdated(recipe: dict, model_path: Path) -> str | None:
    """Why this version cannot run the lean graph at ``model_path``, exported with ``recipe`` (a manifest's), or
    None where it can or the artifact is not a lean graph."""
    if recipe.get("graph") != "lean":
        return None
    version = recipe.get("lean_graph_version")
    if version is None:  # exported before artifacts recorded it: read its inputs' names (no onnx on a node)
        version = 2 if _VERSION_2_INPUT in model_path.read_bytes() else LEAN_GRAPH_VERSION
    if version == LEAN_GRAPH_VERSION:
        return None
    return (
        f"its lean graph is version {version}, and this hybrid runs version {LEAN_GRAPH_VERSION}: export the "
        "artifact again with this hybrid (hybrid export)"
    )


@dataclass(frozen=True)
class LeanWeights:
    """How each kind of weight is stored: None is float32, else bits with the form ``blocks`` implements."""

    projection_bits: int | None
    head_bits: int | None
    block_size: int = 32
    # 4: int8 activations inside MatMulNBits, MLAS's fastest CPU kernels.
    accuracy_level: int = 4
    # float16 for the CUDA provider, whose GroupQueryAttention runs in half precision only; the KV cache and
    # every float constant take this type, the logits come out as float32 either way.
    activations: str = "float32"

    @property
    def numpy_float(self) -> type:
        return np.float16 if self.activations == "float16" else np.float32


@dataclass(frozen=True)
class DecoderShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_positions: int
    rope_theta: float
    rms_epsilon: float

    @classmethod
    def from_config(cls, config: dict) -> DecoderShape:
        if config.get("model_type") not in ("llama", "mistral", "qwen2") or config.get("rope_scaling"):
            raise ValueError(
                f"the lean graph covers Llama-style decoders without rope scaling, not {config.get('model_type')!r} "
                f"with rope_scaling={config.get('rope_scaling')}: export this model with an optimum precision"
            )
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        return cls(
            layers=int(config["num_hidden_layers"]),
            hidden=hidden,
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads", heads)),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate=int(config["intermediate_size"]),
            vocab=int(config["vocab_size"]),
            max_positions=int(config["max_position_embeddings"]),
            rope_theta=float(config.get("rope_theta", 10000.0)),
            rms_epsilon=float(config.get("rms_norm_eps", 1e-6)),
        )


class _GraphWriter:
    """Collects nodes and initializers with unique names."""

    def __init__(self, weights: LeanWeights):
        self.weights = weights
        self.nodes: list = []
        self.initializers: list = []
        self._block_sums: dict[int, str] = {}

    def constant(self, name: str, array: np.ndarray) -> str:
        """An initializer; float ones in the activations' type."""
        from onnx import numpy_helper

        if array.dtype.kind == "f":
            array = array.astype(self.weights.numpy_float)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name=name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "", **attributes) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain or None, **attributes))

    def skip_norm(self, x: str, residual: str, gamma: str, outputs: list[str], name: str, eps: float) -> None:
        """RMS norm of ``x + residual``, fused: ``outputs`` are the normed sum and, where a second name is given,
        the sum itself (the residual stream onward)."""
        fused = outputs[:1] if len(outputs) == 1 else [outputs[0], "", "", outputs[1]]
        self.node("SkipSimplifiedLayerNormalization", [x, residual, gamma], fused, name, domain=_MS, epsilon=eps)

    def linear(self, x: str, weight: np.ndarray, name: str, bits: int | None) -> str:
        """x @ weight.T for a [N, K] weight, stored as the recipe says."""
        out = f"{name}/out"
        if bits is None:
            self.node("MatMul", [x, self.constant(f"{name}.weight", weight.T.astype(np.float32))], [out], name)
            return out
        packed = (
            quantize_offset(weight, bits, self.weights.block_size)
            if bits == 4
            else quantize_symmetric(weight, bits, self.weights.block_size)
        )
        product = out if packed.offsets is None else f"{name}/scaled"
        self.matmul_nbits(x, packed, name, product, packed_name=f"{name}.qweight")
        if packed.offsets is None:
            return out
        sums = f"{name}/block_sums"
        self.node("MatMul", [x, self.block_sums(packed.k)], [sums], f"{name}/BlockSums")
        correction = f"{name}/offset_correction"
        self.node("MatMul", [sums, self.constant(f"{name}.offsets", packed.offsets)], [correction], f"{name}/Offsets")
        self.node("Add", [product, correction], [out], f"{name}/AddOffsets")
        return out

    def matmul_nbits(self, x: str, packed: PackedWeight, name: str, out: str, packed_name: str) -> None:
        if not any(init.name == packed_name for init in self.initializers):
            self.constant(packed_name, packed.packed)
        self.node(
            "MatMulNBits",
            [x, packed_name, self.constant(f"{name}.scales", packed.scales.reshape(-1))],
            [out],
            name,
            domain=_MS,
            K=packed.k,
            N=packed.n,
            bits=packed.bits,
            block_size=packed.block_size,
            accuracy_level=self.weights.accuracy_level,
        )

    def block_sums(self, k: int) -> str:
        if k not in self._block_sums:
            self._block_sums[k] = self.constant(f"block_sums_{k}", block_sum_matrix(k, self.weights.block_size))
        return self._block_sums[k]


def _rotary_caches(shape: DecoderShape) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [max_positions, head_dim/2] in float32, computed as transformers' Llama computes them."""
    exponents = np.arange(0, shape.head_dim, 2, dtype=np.int64).astype(np.float32) / shape.head_dim
    inverse = (1.0 / (np.float32(shape.rope_theta) ** exponents)).astype(np.float32)
    angles = np.arange(shape.max_positions, dtype=np.float32)[:, None] * inverse[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _embedding_and_head(writer: _GraphWriter, shape: DecoderShape, table: np.ndarray) -> tuple[str, callable]:
    """The embedded input_ids, and a function that writes the output head on the final hidden states."""
    bits = writer.weights.head_bits
    if bits is None:
        writer.node("Gather", [writer.constant("embed_tokens.weight", table), "input_ids"], ["embeds"], "Embed")
        return "embeds", lambda hidden: writer.linear(hidden, table, "lm_head", None)
    packed = quantize_symmetric(table, bits, writer.weights.block_size)
    writer.constant("lm_head.qweight", packed.packed)
    writer.node(
        "GatherBlockQuantized",
        ["lm_head.qweight", "input_ids", writer.constant("embed_tokens.scales", packed.scales[:, :, None])],
        ["embeds_blocked"],
        "Embed",
        domain=_MS,
        bits=bits,
        block_size=writer.weights.block_size,
        gather_axis=0,
        quantize_axis=2,
    )
    writer.node(
        "Reshape",
        ["embeds_blocked", writer.constant("embeds_shape", np.array([0, 0, shape.hidden], np.int64))],
        ["embeds"],
        "EmbedReshape",
    )

    def head(hidden: str) -> str:
        writer.matmul_nbits(hidden, packed, "lm_head", "lm_head/out", packed_name="lm_head.qweight")
        return "lm_head/out"

    return "embeds", head


def _input_norm(writer: _GraphWriter, tensors: dict, index: int, stream: str, residual: str | None, eps: float):
    """The layer's input norm, with the residual add of the layer before folded in; (normed, residual)."""
    name = f"layers.{index}"
    normed = f"{name}/input_norm"
    gamma = writer.constant(f"{name}.input_norm.weight", tensors[f"model.layers.{index}.input_layernorm.weight"])
    if residual is None:
        writer.node("SimplifiedLayerNormalization", [stream, gamma], [normed], f"{name}/InputNorm", epsilon=eps)
        return normed, stream
    summed = f"{name}/residual_in"
    writer.skip_norm(stream, residual, gamma, [normed, summed], f"{name}/InputNorm", eps)
    return normed, summed


def _attention(writer: _GraphWriter, shape: DecoderShape, tensors: dict, index: int, normed: str) -> str:
    """Fused QKV projection, GroupQueryAttention over the layer's KV buffer, output projection."""
    prefix, name = f"model.layers.{index}.self_attn", f"layers.{index}"
    bits = writer.weights.projection_bits
    qkv_weight = np.concatenate([tensors[f"{prefix}.{p}_proj.weight"] for p in ("q", "k", "v")])
    qkv = writer.linear(normed, qkv_weight, f"{name}/qkv_proj", bits)
    past = [f"past_key_values.{index}.key", f"past_key_values.{index}.value"]
    # Inputs by position: packed QKV (no separate key and value), the cache, lengths and rotary caches.
    inputs = [qkv, "", "", *past, "seqlens_k", "total_sequence_length", "cos_cache", "sin_cache"]
    attention = f"{name}/attention"
    writer.node(
        "GroupQueryAttention",
        inputs,
        [attention, f"present.{index}.key", f"present.{index}.value"],
        f"{name}/GroupQueryAttention",
        domain=_MS,
        num_heads=shape.heads,
        kv_num_heads=shape.kv_heads,
        do_rotary=1,
        rotary_interleaved=0,
        scale=float(shape.head_dim**-0.5),
    )
    return writer.linear(attention, tensors[f"{prefix}.o_proj.weight"], f"{name}/o_proj", bits)


def _mlp(writer: _GraphWriter, shape: DecoderShape, tensors: dict, index: int, normed: str) -> str:
    """Fused gate-and-up projection, SiLU(gate) * up, down projection."""
    prefix, name = f"model.layers.{index}.mlp", f"layers.{index}"
    bits = writer.weights.projection_bits
    gate_up_weight = np.concatenate([tensors[f"{prefix}.{p}_proj.weight"] for p in ("gate", "up")])
    gate_up = writer.linear(normed, gate_up_weight, f"{name}/gate_up_proj", bits)
    gate, up = f"{name}/gate", f"{name}/up"
    split = writer.constant(f"{name}.split", np.array([shape.intermediate, shape.intermediate], np.int64))
    writer.node("Split", [gate_up, split], [gate, up], f"{name}/SplitGateUp", axis=-1)
    writer.node("Sigmoid", [gate], [f"{name}/gate_sigmoid"], f"{name}/Sigmoid")
    writer.node("Mul", [gate, f"{name}/gate_sigmoid"], [f"{name}/gate_silu"], f"{name}/Silu")
    writer.node("Mul", [f"{name}/gate_silu", up], [f"{name}/activated"], f"{name}/GateTimesUp")
    return writer.linear(f"{name}/activated", tensors[f"{prefix}.down_proj.weight"], f"{name}/down_proj", bits)


def _layer(writer: _GraphWriter, shape: DecoderShape, tensors: dict, index: int, stream: str, residual: str | None):
    """One decoder layer; returns the names of its MLP output and of the residual stream before it."""
    name = f"layers.{index}"
    normed, residual = _input_norm(writer, tensors, index, stream, residual, shape.rms_epsilon)
    projected = _attention(writer, shape, tensors, index, normed)
    post_normed, post_residual = f"{name}/post_attention_norm", f"{name}/residual_mid"
    gamma = writer.constant(
        f"{name}.post_norm.weight", tensors[f"model.layers.{index}.post_attention_layernorm.weight"]
    )
    writer.skip_norm(projected, residual, gamma, [post_normed, post_residual], f"{name}/PostAttentionNorm",
                     shape.rms_epsilon)  # fmt: skip
    return _mlp(writer, shape, tensors, index, post_normed), post_residual


def build_lean_model(tensors: dict[str, np.ndarray], config: dict, weights: LeanWeights):
    """The lean decoder as an onnx ModelProto, from a transformers checkpoint's tensors and config."""
    from onnx import TensorProto, helper

    shape = DecoderShape.from_config(config)
    table = tensors["model.embed_tokens.weight"]
    if "lm_head.weight" in tensors and not np.array_equal(tensors["lm_head.weight"], table):
        raise ValueError("the lean graph expects an output head tied to the embedding; this model's is untied")
    writer = _GraphWriter(weights)
    cos, sin = _rotary_caches(shape)
    writer.constant("cos_cache", cos)
    writer.constant("sin_cache", sin)
    stream, head = _embedding_and_head(writer, shape, table)
    residual = None
    for index in range(shape.layers):
        stream, residual = _layer(writer, shape, tensors, index, stream, residual)
    final_gamma = writer.constant("final_norm.weight", tensors["model.norm.weight"])
    writer.skip_norm(stream, residual, final_gamma, ["final_norm"], "FinalNorm", shape.rms_epsilon)
    writer.node(
        "Reshape",
        ["final_norm", writer.constant("flat_shape", np.array([-1, shape.hidden], np.int64))],
        ["final_flat"],
        "Flatten",
    )
    writer.node("Gather", ["final_flat", "logit_rows"], ["final_rows"], "LogitRows", axis=0)
    if weights.activations == "float16":
        writer.node("Cast", [head("final_rows")], ["logits"], "Logits", to=TensorProto.FLOAT)
    else:
        writer.node("Identity", [head("final_rows")], ["logits"], "Logits")

    cache_type = TensorProto.FLOAT16 if weights.activations == "float16" else TensorProto.FLOAT
    cache_dims = ["batch", shape.kv_heads, "capacity", shape.head_dim]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
        helper.make_tensor_value_info("logit_rows", TensorProto.INT64, ["rows"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", shape.vocab])]
    for index in range(shape.layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{index}.{kind}", cache_type, cache_dims))
            outputs.append(helper.make_tensor_value_info(f"present.{index}.{kind}", cache_type, cache_dims))
    graph = helper.make_graph(writer.nodes, "lean_decoder", inputs, outputs, writer.initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(_MS, 1)], ir_version=8
    )
    helper.set_model_props(model, {LEAN_METADATA_KEY: json.dumps(shape.__dict__)})
    return model


def load_checkpoint(hf_dir: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The float32 tensors and config of a transformers checkpoint folder (safetensors)."""
    from safetensors.numpy import load_file

    files = sorted(Path(hf_dir).glob("*.safetensors"))
    if not files:
        raise ValueError(f"{hf_dir} has no .safetensors weights: the lean graph reads safetensors checkpoints")
    tensors: dict[str, np.ndarray] = {}
    for path in files:
        tensors.update({k: v.astype(np.float32) for k, v in load_file(str(path)).items()})
    return tensors, json.loads((Path(hf_dir) / "config.json").read_text())


def write_lean_model(hf_dir: Path, weights: LeanWeights, out_file: Path) -> None:
    """Writes the graph to ``out_file`` and its weights beside it (``<name>.data``): ONNX Runtime maps an external
    file instead of parsing and copying a protobuf that holds them, which takes a sixth off the agent's memory."""
    import onnx

    tensors, config = load_checkpoint(hf_dir)
    onnx.save(
        build_lean_model(tensors, config, weights),
        str(out_file),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=out_file.name + ".data",
        size_threshold=1024,
    )
