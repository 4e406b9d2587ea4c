"""`hybrid artifacts serve`: artifacts over HTTP by manifest hash, nothing else."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from edge_agent.artifacts.manifest import MANIFEST_NAME
from edge_agent.artifacts.server import ArtifactServer
from tests.conftest import running_hybrid
from tests.edge_agent.artifacts.samples import sample_artifact


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def server(tmp_path):
    sha = sample_artifact(tmp_path / "served" / "sample")
    (tmp_path / "served" / "not-an-artifact").mkdir()
    server = ArtifactServer(tmp_path / "served").start()
    yield server, sha, tmp_path / "served"
    server.stop()


def test_index_manifest_and_files_by_content_hash(server):
    server, sha, root = server
    status, body = get(f"http://{server.address}/artifacts")
    assert status == 200
    (entry,) = json.loads(body)["artifacts"]
    assert entry["sha256"] == sha and entry["url"] == f"/artifacts/{sha}" and entry["precision"] == "int8-b32"
    assert entry["files"] == ["extra/notes.txt", "model.onnx", "tokenizer.json"]
    assert get(server.url(sha) + "/" + MANIFEST_NAME) == (200, (root / "sample" / MANIFEST_NAME).read_bytes())
    assert get(server.url(sha) + "/extra/notes.txt") == (200, b"a file in a subfolder\n")


def test_artifact_added_later_is_found_by_its_hash(server):
    server, _, root = server
    later = sample_artifact(root / "later", "later")
    assert get(server.url(later) + "/tokenizer.json") == (200, b'{"version": "later"}\n')


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/artifacts/" + "ab" * 32, "no artifact with manifest sha256"),
        ("/artifacts/{sha}/secret.txt", "has no file 'secret.txt'"),
        ("/artifacts/{sha}/../../etc/passwd", "has no file '../../etc/passwd'"),
        ("/etc/passwd", "artifacts are under /artifacts/<manifest sha256>"),
    ],
)
def test_anything_else_is_a_404_that_says_why(server, path, words):
    server, sha, root = server
    (root / "sample" / "secret.txt").write_text("not listed in the manifest")
    status, body = get(f"http://{server.address}{path.format(sha=sha)}")
    assert status == 404
    assert words in json.loads(body)["error"]


def test_damaged_artifact_is_not_served(tmp_path):
    sha = sample_artifact(tmp_path / "served" / "sample")
    (tmp_path / "served" / "sample" / "tokenizer.json").write_text("changed")
    server = ArtifactServer(tmp_path / "served").start()
    try:
        assert json.loads(get(f"http://{server.address}/artifacts")[1]) == {"artifacts": []}
        assert get(server.url(sha) + "/tokenizer.json")[0] == 404
    finally:
        server.stop()


def test_cli_serves_until_sigterm_and_hash_prints_the_pin(tmp_path):
    sha = sample_artifact(tmp_path / "sample")
    hashed = subprocess.run(
        [sys.executable, "-m", "hybrid.cli", "artifacts", "hash", str(tmp_path / "sample")],
        capture_output=True,
        text=True,
    )
    assert hashed.returncode == 0 and hashed.stdout.strip() == sha
    with running_hybrid("artifacts", "serve", str(tmp_path / "sample"), "--port", "0") as (process, address):
        assert get(f"http://{address}/artifacts/{sha}/tokenizer.json")[0] == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
