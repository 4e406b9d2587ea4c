"""Each recipe's conversion, on a one-MatMul ONNX model small enough to quantize in milliseconds."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_agent.artifacts.manifest import MODEL_FILE
from edge_agent.artifacts.quantize import AUTO_ORDER, PRECISION_CHOICES, RECIPES, convert, quantize

IN, OUT = 64, 48


def one_matmul(seed: int = 0) -> onnx.ModelProto:
    weight = np.random.default_rng(seed).standard_normal((IN, OUT)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["y"])],
        "one-matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, OUT])],
        [numpy_helper.from_array(weight, "weight")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"x": x.astype(np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32)}
    return session.run(None, feed)[0].astype(np.float32)


def test_precision_choices():
    assert PRECISION_CHOICES == (
        "auto",
        "int4",
        "int8",
        "fp16",
        "fp32",
        "lean-int4",
        "lean-int8",
        "lean-fp32",
        "lean-int4-fp16",
    )
    assert "fp16" not in AUTO_ORDER, "fp16 has no fast CPU kernels: auto must not build it"
    assert [RECIPES[name].full_precision for name in ("int4", "int8", "fp16", "fp32")] == [False, False, True, True]


@pytest.mark.parametrize(("precision", "bits", "tolerance"), [("int8", 8, 0.02), ("int4", 4, 0.3)])
def test_integer_recipes_block_quantize_the_weight_matmul(precision, bits, tolerance):
    model = one_matmul()
    x = np.random.default_rng(1).standard_normal((1, IN)).astype(np.float32)
    expected = run(model, x)
    quantized = convert(one_matmul(), RECIPES[precision])
    nodes = {node.op_type: node for node in quantized.graph.node}
    assert "MatMul" not in nodes and "MatMulNBits" in nodes
    attributes = {a.name: helper.get_attribute_value(a) for a in nodes["MatMulNBits"].attribute}
    assert attributes["bits"] == bits and attributes["block_size"] == 32
    error = np.abs(run(quantized, x) - expected).max() / np.abs(expected).max()
    assert error < tolerance, f"{precision} is {error:.1%} off the float result"


def test_fp16_halves_every_weight_and_fp32_is_left_as_it_is():
    halved = convert(one_matmul(), RECIPES["fp16"])
    assert {init.data_type for init in halved.graph.initializer} == {TensorProto.FLOAT16}
    x = np.random.default_rng(2).standard_normal((1, IN)).astype(np.float32)
    np.testing.assert_allclose(run(halved, x), run(one_matmul(), x), rtol=0.02, atol=0.05)
    assert convert(one_matmul(), RECIPES["fp32"]) == one_matmul()


def test_quantize_writes_the_model_file_of_the_artifact(tmp_path):
    base, out = tmp_path / "base", tmp_path / "out"
    base.mkdir()
    out.mkdir()
    onnx.save(one_matmul(), str(base / MODEL_FILE))
    quantize(base, RECIPES["int8"], out)
    assert any(node.op_type == "MatMulNBits" for node in onnx.load(str(out / MODEL_FILE)).graph.node)
