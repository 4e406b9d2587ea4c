"""Which lean artifacts this version can run: the graph version a manifest records, or, for artifacts exported
before it was recorded, what the graph's inputs say."""

from __future__ import annotations

from edge_agent.artifacts.lean_graph import LEAN_GRAPH_VERSION, outdated


def model_file(tmp_path, content: bytes):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    return path


def test_a_lean_artifact_of_this_graph_version_runs(tmp_path):
    recipe = {"graph": "lean", "lean_graph_version": LEAN_GRAPH_VERSION}
    assert outdated(recipe, model_file(tmp_path, b"graph")) is None


def test_a_lean_artifact_of_another_version_is_refused_saying_to_export_it_again(tmp_path):
    reason = outdated({"graph": "lean", "lean_graph_version": LEAN_GRAPH_VERSION - 1}, model_file(tmp_path, b"graph"))
    assert f"version {LEAN_GRAPH_VERSION - 1}" in reason and "export the artifact again" in reason


def test_an_artifact_without_a_recorded_version_is_dated_by_its_inputs(tmp_path):
    recipe = {"graph": "lean"}
    assert "version 2" in outdated(recipe, model_file(tmp_path, b"...input_ids...query_seqlens...seqlens_k..."))
    assert outdated(recipe, model_file(tmp_path, b"...input_ids...seqlens_k...")) is None


def test_an_optimum_artifact_has_no_lean_graph_to_date(tmp_path):
    assert outdated({"exporter": "optimum text-generation-with-past"}, tmp_path / "absent.onnx") is None
