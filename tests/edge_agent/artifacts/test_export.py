"""Quality-gated export with the real model, optimum and ONNX Runtime."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from edge_agent.artifacts.export import RECIPES, export_artifact
from edge_agent.artifacts.manifest import read_manifest
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


def test_int4_fails_the_gate_with_a_message_that_says_what_to_do(tmp_path):
    with pytest.raises(QualityGateError) as failure:
        export_artifact(precision="int4", out=tmp_path / "int4")
    assert "int4-b32: perplexity" in failure.value.message
    assert "--precision int8" in failure.value.message and "--force" in failure.value.message
    assert not (tmp_path / "int4").exists(), "a refused artifact must leave nothing behind"


def test_forced_int4_is_labelled_as_failing(tmp_path):
    folder, manifest = export_artifact(precision="int4", out=tmp_path / "int4", force=True)
    assert manifest.quality.forced and not manifest.quality.passed
    assert json.loads((folder / "manifest.json").read_text())["quality"]["forced"] is True


def test_auto_keeps_the_fastest_that_passes_and_remembers_why(int8_artifact, fp32_artifact, tmp_path):
    cache = tmp_path / "cache"
    # Hard links: the cached model, export and artifacts are reused, only the auto choice is new.
    shutil.copytree(
        constants.CACHE_DIR, cache, ignore=shutil.ignore_patterns("auto-*", "up", "*.yaml*"), copy_function=os.link
    )
    messages: list[str] = []
    folder, manifest = export_artifact(precision="auto", cache_dir=cache, progress=messages.append)
    record = json.loads(next((cache / "quality").glob("auto-*.json")).read_text())
    assert set(record["tokens_per_second"]) == {"int8", "fp32"}, "both passing precisions must be measured"
    assert "int4" in record["rejected"] and any(m.startswith("skipped int4-b32") for m in messages)
    fastest = max(record["tokens_per_second"], key=record["tokens_per_second"].get)
    assert manifest.precision == RECIPES[fastest].name
    # A second run reuses the recorded choice instead of measuring again.
    messages.clear()
    again, _ = export_artifact(precision="auto", cache_dir=cache, progress=messages.append)
    assert again == folder and not any("tokens/s" in m for m in messages)


def test_export_is_cached_by_content_hash(int8_artifact, tmp_path):
    cached, _ = export_artifact(precision="int8")
    before = (cached / "model.onnx").stat().st_mtime_ns
    messages: list[str] = []
    again, _ = export_artifact(precision="int8", out=tmp_path / "again", progress=messages.append)
    assert (cached / "model.onnx").stat().st_mtime_ns == before, "a cached artifact was rebuilt"
    assert read_manifest(again).files == read_manifest(int8_artifact).files


def test_bad_export_arguments(tmp_path):
    with pytest.raises(ModelNotFoundError, match="use one of \\[smollm2-135m\\] or a local Hugging Face folder"):
        export_artifact(model="no-such-model")
    with pytest.raises(InvalidRequestError, match="unknown precision 'int3'"):
        export_artifact(precision="int3")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(InvalidRequestError, match="already exists and holds something else"):
        export_artifact(precision="int8", out=occupied)
