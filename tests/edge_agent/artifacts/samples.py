"""A small artifact folder for tests of what carries artifacts (no model runs from it)."""

from __future__ import annotations

from pathlib import Path

from edge_agent.artifacts.manifest import MODEL_FILE, Manifest, hash_files, manifest_sha256, write_manifest


def sample_artifact(folder: Path, content: str = "v1") -> str:
    """Writes an artifact whose files are small stand-ins; returns its manifest sha256."""
    folder.mkdir(parents=True)
    (folder / MODEL_FILE).write_bytes(f"model {content}\n".encode() * 1000)
    (folder / "tokenizer.json").write_text(f'{{"version": "{content}"}}\n')
    (folder / "extra").mkdir()
    (folder / "extra" / "notes.txt").write_text("a file in a subfolder\n")
    manifest = Manifest(
        model="sample-model",
        source_fingerprint="0" * 64,
        precision="int8-b32",
        full_precision=False,
        opset=18,
        context_window=2048,
        files=hash_files(folder),
    )
    write_manifest(folder, manifest)
    return manifest_sha256(folder)
