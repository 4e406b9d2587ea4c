"""Fixtures of the installer and update tests: the project's wheel and an artifact server on loopback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.artifacts.manifest import manifest_sha256
from edge_agent.artifacts.server import ArtifactServer
from tests.edge_agent.helpers import FAULT_AFTER_TOKENS, build_wheel, linked_copy, make_faulty_artifact


@pytest.fixture(scope="session")
def edge_wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@dataclass
class ArtifactShelf:
    """`hybrid artifacts serve` over a folder that tests put artifacts into."""

    root: Path
    server: ArtifactServer

    def put(self, folder: Path, name: str) -> tuple[str, str]:
        """Serves (a linked copy of) ``folder``; returns its URL and manifest sha256."""
        served = self.root / name
        if not served.exists():
            linked_copy(folder, served)
        sha = manifest_sha256(served)
        return self.server.url(sha), sha


@pytest.fixture(scope="session")
def artifact_shelf(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    server = ArtifactServer(root).start()
    yield ArtifactShelf(root, server)
    server.stop()


@pytest.fixture(scope="session")
def canary_failing_artifact(int8_artifact, artifact_shelf) -> tuple[str, str]:
    """Served; verifies, loads, and fails every request: the canary catches it."""
    folder = artifact_shelf.root / "fails-every-request"
    if not folder.exists():
        make_faulty_artifact(int8_artifact, folder, fault_after_tokens=0)
    return artifact_shelf.put(folder, folder.name)


@pytest.fixture(scope="session")
def probation_failing_artifact(int8_artifact, artifact_shelf) -> tuple[str, str]:
    """Served; passes the canary, fails a long prompt: only the probation catches it."""
    folder = artifact_shelf.root / "fails-long-prompts"
    if not folder.exists():
        make_faulty_artifact(int8_artifact, folder, fault_after_tokens=FAULT_AFTER_TOKENS)
    return artifact_shelf.put(folder, folder.name)
