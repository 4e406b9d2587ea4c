"""The edge artifact: a folder holding model.onnx, the tokenizer files and manifest.json.

The manifest records where the model came from, its precision, its quality against the full
model, and the sha256 of every other file. ``verify_artifact`` refuses a folder whose files do not
match, so a tampered or half-copied artifact never serves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from hybrid.errors import ArtifactError

if TYPE_CHECKING:
    from edge_agent.artifacts.signing import TrustedKey

MANIFEST_NAME = "manifest.json"
# The detached signature over the manifest's bytes; beside the manifest, listed by it as little as it is.
SIGNATURE_NAME = "manifest.json.sig"
UNLISTED_NAMES = (MANIFEST_NAME, SIGNATURE_NAME)
MODEL_FILE = "model.onnx"
MANIFEST_FORMAT = 1


class QualityReport(BaseModel):
    """How the artifact compares with the full PyTorch model on the shipped evaluation text."""

    text_tokens: int = Field(description="Tokens in the evaluation text.")
    reference_perplexity: float = Field(description="Perplexity of the full-precision PyTorch model.")
    perplexity: float = Field(description="Perplexity of this artifact, through ONNX Runtime.")
    perplexity_increase: float = Field(description="perplexity / reference_perplexity - 1.")
    next_token_agreement: float = Field(
        description="Fraction of positions where the artifact's teacher-forced argmax equals the full model's."
    )
    max_perplexity_increase: float = Field(description="The gate applied at export.")
    passed: bool = Field(description="Whether the artifact passed the gate.")
    forced: bool = Field(default=False, description="Exported despite failing the gate (--force).")


class Manifest(BaseModel):
    format: int = Field(default=MANIFEST_FORMAT, description="Manifest format version.")
    model: str = Field(description="Model name, e.g. smollm2-135m.")
    source_fingerprint: str = Field(description="sha256 of what the full model was loaded from.")
    precision: str = Field(description="What ships, e.g. int8-b32, int4-b32, fp16, fp32.")
    full_precision: bool = Field(description="True for fp32/fp16 artifacts; false for quantized ones.")
    opset: int = Field(description="ONNX opset of model.onnx.")
    recipe: dict[str, Any] = Field(default_factory=dict, description="Export and quantization settings.")
    context_window: int = Field(description="The model's max_position_embeddings.")
    quality: QualityReport | None = Field(default=None, description="Quality against the full model.")
    files: dict[str, str] = Field(description="sha256 of every file in the artifact but the manifest.")
    created_by: str = Field(default="", description="hybrid version that wrote it.")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hash_files(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() not in UNLISTED_NAMES
    }


def check_member_name(name: str, where: str) -> str:
    """``name`` when it is a relative path inside an artifact; ArtifactError naming ``where`` otherwise."""
    path = PurePosixPath(name)
    if (
        not path.parts
        or path.as_posix() != name  # "./a", "a//b", "a/": one spelling per file
        or path.is_absolute()
        or ".." in path.parts
        or "\\" in name
        or "\0" in name
        or name in UNLISTED_NAMES
    ):
        raise ArtifactError(
            f"{where} lists the file {name!r}, which is not a path inside the artifact: refuse it, and rebuild the "
            "artifact with `hybrid export`"
        )
    return name


def member_path(folder: Path, name: str, where: str | None = None) -> Path:
    """The file ``name`` of the artifact in ``folder``, resolved; ArtifactError when it leads out of the folder
    (a `..`, an absolute path, or a symlink on the way)."""
    where = where or str(Path(folder) / MANIFEST_NAME)
    check_member_name(name, where)
    root = Path(folder).resolve()
    resolved = (root / name).resolve()
    if not resolved.is_relative_to(root) or resolved != root / name:
        raise ArtifactError(
            f"{root / name} listed in {where} is a symlink leading to {resolved}: an artifact holds its files "
            "itself; copy the artifact without links (`cp -rL`), or rebuild it"
        )
    return resolved


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    path = folder / MANIFEST_NAME
    path.write_text(manifest.model_dump_json(indent=2) + "\n")
    return path


def manifest_sha256(folder: Path) -> str:
    """The hash an operator pins on the command line to trust a whole artifact."""
    return sha256_file(Path(folder) / MANIFEST_NAME)


def read_manifest(folder: Path) -> Manifest:
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(
            f"{folder} is not an edge artifact: {MANIFEST_NAME} is missing; build one with `hybrid export --out {folder}`"
        )
    try:
        return Manifest.model_validate(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ArtifactError(
            f"{path} is not a valid manifest ({exc}); rebuild the artifact with `hybrid export`"
        ) from exc


def verify_artifact(
    folder: Path, expected_manifest_sha256: str | None = None, trusted: TrustedKey | None = None
) -> Manifest:
    """Checks every file against the manifest, and the manifest against the pin and the trusted key when given;
    raises ArtifactError naming the first mismatch."""
    folder = Path(folder)
    if expected_manifest_sha256 is not None:
        actual = manifest_sha256(folder) if (folder / MANIFEST_NAME).is_file() else "missing"
        if actual != expected_manifest_sha256:
            raise ArtifactError(
                f"{folder / MANIFEST_NAME} has sha256 {actual}, expected {expected_manifest_sha256}: "
                "the artifact is not the one you pinned"
            )
    manifest = read_manifest(folder)
    if trusted is not None:
        signature = folder / SIGNATURE_NAME
        trusted.check(
            (folder / MANIFEST_NAME).read_bytes(), signature.read_bytes() if signature.is_file() else None, str(folder)
        )
    if MODEL_FILE not in manifest.files:
        raise ArtifactError(f"{folder / MANIFEST_NAME} lists no {MODEL_FILE}; rebuild the artifact")
    for name, expected in manifest.files.items():
        path = member_path(folder, name)
        if not path.is_file():
            raise ArtifactError(f"{path} is listed in the manifest but missing; copy the whole artifact again")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(
                f"{path} has sha256 {actual} but the manifest says {expected}: the file was modified or "
                "corrupted; fetch the artifact again"
            )
    extra = sorted(set(hash_files(folder)) - set(manifest.files))
    if extra:
        raise ArtifactError(f"{folder} holds files the manifest does not list: {extra}; remove them or rebuild")
    return manifest
