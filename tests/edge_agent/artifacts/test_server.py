"""`hybrid artifacts serve`: artifacts over HTTP(S) by manifest hash, nothing else, and nothing outside them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from edge_agent.artifacts.manifest import (
    MANIFEST_NAME,
    manifest_sha256,
    read_manifest,
    sha256_file,
    verify_artifact,
    write_manifest,
)
from edge_agent.artifacts.server import ArtifactServer, ServerTls
from edge_agent.artifacts.store import ArtifactStore
from hybrid.errors import ArtifactError
from tests.conftest import running_hybrid
from tests.edge_agent.artifacts.samples import loopback_certificate, sample_artifact


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


# --- paths outside the artifact -----------------------------------------------------------------


def _list_outside_file(folder, name: str, secret) -> str:
    """Rewrites the manifest of ``folder`` to list ``name``, pinned to the hash of ``secret`` (a re-hashed manifest,
    as an attacker would write it); returns the new manifest sha256."""
    manifest = read_manifest(folder)
    (folder / MANIFEST_NAME).unlink()
    write_manifest(folder, manifest.model_copy(update={"files": {**manifest.files, name: sha256_file(secret)}}))
    return manifest_sha256(folder)


@pytest.mark.parametrize("kind", ["dot-dot", "absolute", "symlink"])
def test_manifest_listing_a_file_outside_the_artifact_gets_nothing_served(tmp_path, kind):
    secret = tmp_path / "secret.txt"
    secret.write_text("the node's private file\n")
    folder = tmp_path / "served" / "sample"
    sample_artifact(folder)
    if kind == "symlink":
        (folder / "link.txt").symlink_to(secret)
    name = {"dot-dot": "../../secret.txt", "absolute": str(secret), "symlink": "link.txt"}[kind]
    sha = _list_outside_file(folder, name, secret)
    with pytest.raises(ArtifactError, match="not a path inside the artifact|is a symlink leading to"):
        verify_artifact(folder, sha)
    server = ArtifactServer(tmp_path / "served").start()
    try:
        assert json.loads(get(f"http://{server.address}/artifacts")[1]) == {"artifacts": []}
        status, body = get(server.url(sha) + "/" + urllib.parse.quote(name, safe=""))
        assert status == 404 and b"private file" not in body
    finally:
        server.stop()
    with pytest.raises(ArtifactError, match="not a path inside the artifact|is a symlink leading to"):
        ArtifactStore(tmp_path / "node").add(str(folder), sha)


@pytest.mark.skipif(not Path("/etc/hostname").is_file(), reason="needs /etc/hostname")
def test_the_etc_hostname_probe_is_refused(server):
    server, _, root = server
    # Enough `..` to climb from the artifact to / (more are harmless), as the probe wrote it.
    name = "../" * len((root / "sample").resolve().parts) + "etc/hostname"
    sha = _list_outside_file(root / "sample", name, Path("/etc/hostname"))
    for path in (name, urllib.parse.quote(name, safe="")):
        status, body = get(f"{server.url(sha)}/{path}")
        assert status == 404 and Path("/etc/hostname").read_bytes() not in body


def test_a_file_swapped_for_a_link_after_the_scan_is_not_served(server, tmp_path):
    server, sha, root = server
    secret = tmp_path / "secret.txt"
    secret.write_text("the node's private file\n")
    (root / "sample" / "tokenizer.json").unlink()
    (root / "sample" / "tokenizer.json").symlink_to(secret)
    status, body = get(server.url(sha) + "/tokenizer.json")
    assert status == 404 and b"private file" not in body


# --- ranges, TLS and where it binds --------------------------------------------------------------


def test_range_requests_resume_a_file(server):
    server, sha, root = server
    whole = (root / "sample" / "model.onnx").read_bytes()
    request = urllib.request.Request(server.url(sha) + "/model.onnx", headers={"Range": "bytes=100-"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 100-{len(whole) - 1}/{len(whole)}"
        assert response.read() == whole[100:]
    beyond = urllib.request.Request(server.url(sha) + "/model.onnx", headers={"Range": f"bytes={len(whole)}-"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(beyond, timeout=10)
    assert refused.value.code == 416 and refused.value.headers["Content-Range"] == f"bytes */{len(whole)}"


def test_https_with_a_certificate_and_a_node_that_trusts_its_ca(tmp_path, monkeypatch):
    sha = sample_artifact(tmp_path / "served" / "sample")
    cert, key = loopback_certificate(tmp_path / "tls")
    server = ArtifactServer(tmp_path / "served", tls=ServerTls(cert, key)).start()
    try:
        assert server.url(sha).startswith("https://127.0.0.1:")
        with pytest.raises(ArtifactError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            ArtifactStore(tmp_path / "untrusting").add(server.url(sha), sha)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # how a node trusts a private CA
        assert ArtifactStore(tmp_path / "node").add(server.url(sha), sha)[1]
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://{server.address}/artifacts", timeout=5).read()
    finally:
        server.stop()


def test_plain_http_beyond_loopback_needs_tls_or_plaintext(tmp_path):
    sample_artifact(tmp_path / "sample")
    with pytest.raises(ArtifactError, match="without TLS.*--tls-cert and --tls-key.*--plaintext"):
        ArtifactServer(tmp_path / "sample", host="0.0.0.0")
    refused = subprocess.run(
        [sys.executable, "-m", "hybrid.cli", "artifacts", "serve", str(tmp_path / "sample"), "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "--plaintext" in refused.stderr
    cert, key = loopback_certificate(tmp_path / "tls")
    with pytest.raises(ArtifactError, match="--tls-key .* do not make a certificate and its key"):
        ArtifactServer(tmp_path / "sample", tls=ServerTls(cert, cert))
