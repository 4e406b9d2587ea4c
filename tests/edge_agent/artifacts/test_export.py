"""Quality-gated export: the graph changes on a toy graph; the whole pipeline with the real model, optimum and ONNX
Runtime (slow)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_agent.artifacts.export import LOGITS_TO_KEEP, _add_logits_to_keep, _untie_output_projection, export_artifact
from edge_agent.artifacts.manifest import read_manifest
from edge_agent.artifacts.quantize import AUTO_ORDER, RECIPES
from hybrid import constants
from hybrid.errors import InvalidRequestError, ModelNotFoundError, QualityGateError


def test_int8_artifact_passes_the_gate_and_records_its_quality(int8_artifact):
    manifest = read_manifest(int8_artifact)
    quality = manifest.quality
    assert manifest.precision == "int8-b32" and manifest.model == "smollm2-135m"
    assert manifest.opset >= 14 and manifest.context_window == 8192
    assert quality.passed and not quality.forced
    assert quality.text_tokens > 250
    assert quality.perplexity <= quality.reference_perplexity * 1.03
    assert quality.next_token_agreement > 0.9
    assert "tokenizer.model" not in manifest.files, "the 98 MB GGUF copy must not ship"


def test_fp32_artifact_matches_the_full_model(fp32_artifact):
    quality = read_manifest(fp32_artifact).quality
    assert abs(quality.perplexity_increase) < 1e-3
    assert quality.next_token_agreement > 0.99


@pytest.mark.slow  # a real export and quality check
def test_int4_fails_the_gate_with_a_message_that_says_what_to_do(tmp_path):
    with pytest.raises(QualityGateError) as failure:
        export_artifact(precision="int4", out=tmp_path / "int4")
    assert "int4-b32: perplexity" in failure.value.message
    assert "--precision int8" in failure.value.message and "--force" in failure.value.message
    assert not (tmp_path / "int4").exists(), "a refused artifact must leave nothing behind"


@pytest.mark.slow  # a real export and quality check
def test_forced_int4_is_labelled_as_failing(tmp_path):
    folder, manifest = export_artifact(precision="int4", out=tmp_path / "int4", force=True)
    assert manifest.quality.forced and not manifest.quality.passed
    assert json.loads((folder / "manifest.json").read_text())["quality"]["forced"] is True


def test_auto_keeps_the_fastest_that_passes_and_remembers_why(int8_artifact, lean_int4_artifact, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    # Hard links: the cached model, export and artifacts are reused, only the auto choice is new.
    shutil.copytree(
        constants.CACHE_DIR, cache, ignore=shutil.ignore_patterns("auto-*", "up", "*.yaml*"), copy_function=os.link
    )
    # A gate just under the worse of two candidates' recorded increases, so that the record shows a refusal too
    # (their figures move by tenths of a percent with ONNX Runtime's kernels and the graph's version).
    increases = {
        name: read_manifest(artifact).quality.perplexity_increase
        for name, artifact in (("int8", int8_artifact), ("lean-int4", lean_int4_artifact))
    }
    worse = max(increases, key=increases.get)
    gate = increases[worse] - 0.0002
    messages: list[str] = []
    folder, manifest = export_artifact(
        precision="auto", cache_dir=cache, progress=messages.append, max_perplexity_increase=gate
    )
    record = json.loads(next((cache / "quality").glob("auto-*.json")).read_text())
    assert worse in record["rejected"] and any(m.startswith(f"skipped {RECIPES[worse].name}") for m in messages)
    assert set(record["tokens_per_second"]) | set(record["rejected"]) == set(AUTO_ORDER)
    fastest = max(record["tokens_per_second"], key=record["tokens_per_second"].get)
    assert manifest.precision == RECIPES[fastest].name
    # A second run reuses the recorded choice instead of measuring again.
    messages.clear()
    again, _ = export_artifact(
        precision="auto", cache_dir=cache, progress=messages.append, max_perplexity_increase=gate
    )
    assert again == folder and not any("tokens/s" in m for m in messages)


def test_export_is_cached_by_content_hash(int8_artifact, tmp_path):
    cached, _ = export_artifact(precision="int8")
    before = (cached / "model.onnx").stat().st_mtime_ns
    messages: list[str] = []
    again, _ = export_artifact(precision="int8", out=tmp_path / "again", progress=messages.append)
    assert (cached / "model.onnx").stat().st_mtime_ns == before, "a cached artifact was rebuilt"
    assert read_manifest(again).files == read_manifest(int8_artifact).files


def test_bad_export_arguments():
    with pytest.raises(ModelNotFoundError, match="use one of \\[smollm2-135m\\] or a local Hugging Face folder"):
        export_artifact(model="no-such-model")
    with pytest.raises(InvalidRequestError, match="unknown precision 'int3'"):
        export_artifact(precision="int3")


def test_an_occupied_out_folder_is_refused(int8_artifact, tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(InvalidRequestError, match="already exists and holds something else"):
        export_artifact(precision="int8", out=occupied)


def tied_projection(hidden: int = 8, vocab: int = 12) -> tuple[onnx.ModelProto, np.ndarray]:
    """The output projection as optimum exports a tied one: MatMul(hidden states, Transpose(embedding))."""
    embedding = np.random.default_rng(0).standard_normal((vocab, hidden)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["embedding"], ["embedding_t"]),
            helper.make_node("MatMul", ["states", "embedding_t"], ["logits"]),
        ],
        "tied-projection",
        [helper.make_tensor_value_info("states", TensorProto.FLOAT, [1, "sequence", hidden])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "sequence", vocab])],
        [numpy_helper.from_array(embedding, "embedding")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), embedding


def logits_of(model: onnx.ModelProto, states: np.ndarray, keep: int | None = None) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"states": states} if keep is None else {"states": states, LOGITS_TO_KEEP: np.array([keep], np.int64)}
    return session.run(None, feed)[0]


def test_the_tied_projection_gets_its_own_weight_and_computes_only_the_rows_kept():
    model, embedding = tied_projection()
    states = np.random.default_rng(1).standard_normal((1, 5, 8)).astype(np.float32)
    full = logits_of(model, states)

    assert _untie_output_projection(model)
    assert [node.op_type for node in model.graph.node] == ["MatMul"], "the Transpose must be gone"
    untied = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}["embedding_t"]
    np.testing.assert_array_equal(untied, embedding.T)
    np.testing.assert_allclose(logits_of(model, states), full, rtol=1e-6)

    assert _add_logits_to_keep(model)
    assert not _add_logits_to_keep(model), "the input is added once"
    last = logits_of(model, states, keep=1)
    assert last.shape == (1, 1, 12)
    np.testing.assert_allclose(last[0, 0], full[0, -1], rtol=1e-6)
    np.testing.assert_allclose(logits_of(model, states, keep=5), full, rtol=1e-6)


def test_a_projection_that_is_not_tied_is_left_alone():
    model, _ = tied_projection()
    del model.graph.node[0]
    model.graph.initializer.append(numpy_helper.from_array(np.ones((8, 12), np.float32), "embedding_t"))
    assert not _untie_output_projection(model)


def test_export_signs_the_artifact_where_it_places_it(int8_artifact, tmp_path):
    from edge_agent.artifacts.manifest import SIGNATURE_NAME, verify_artifact
    from edge_agent.artifacts.signing import TrustedKey
    from tests.edge_agent.artifacts.samples import signing_keys

    private, public = signing_keys(tmp_path / "keys")
    # The int8 export the test run built is cached: this places and signs it, nothing is rebuilt.
    folder, _ = export_artifact(precision="int8", out=tmp_path / "signed", sign_key=private)
    assert verify_artifact(folder, trusted=TrustedKey.load(public)).precision == "int8-b32"
    # The cache the copy is hard-linked from stays unsigned: a signature belongs to one placed artifact.
    assert not (int8_artifact / SIGNATURE_NAME).exists()


def test_export_with_an_unusable_key_fails_before_it_builds_anything(tmp_path):
    from hybrid.errors import ArtifactError

    with pytest.raises(ArtifactError, match="cannot read the signing key"):
        export_artifact(precision="int8", out=tmp_path / "out", sign_key=tmp_path / "missing")
    assert not (tmp_path / "out").exists()
