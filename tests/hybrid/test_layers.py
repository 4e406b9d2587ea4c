"""The layers contract of pyproject.toml holds, and would catch a core module importing a tier."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter (the dev extra) is not installed")


def lint_imports_on_a_copy(tmp_path: Path, back_import: str = "") -> subprocess.CompletedProcess:
    """Runs lint-imports, with the project's own contract, on a copy of the packages (plus ``back_import``
    appended to hybrid/wire.py); run from the copy, it analyses the copy and not the installed packages."""
    for package in ("hybrid", "edge_agent", "cloud"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    if back_import:
        with open(tmp_path / "hybrid" / "wire.py", "a") as wire:
            wire.write(f"\n{back_import}\n")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_the_core_imports_no_tier(tmp_path):
    result = lint_imports_on_a_copy(tmp_path)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("back_import", ["import edge_agent.config", "from cloud import defaults"])
def test_a_core_module_importing_a_tier_breaks_the_contract(tmp_path, back_import):
    result = lint_imports_on_a_copy(tmp_path, back_import)
    assert result.returncode != 0
    tier = back_import.split()[1].split(".")[0]
    assert f"hybrid is not allowed to import {tier}" in result.stdout
    assert f"hybrid.wire -> {tier}" in result.stdout
