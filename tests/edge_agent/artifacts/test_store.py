"""The node's artifact store: fetched over HTTP (or from a folder or tarball), verified, never left half."""

from __future__ import annotations

import os
import tarfile

import pytest

from edge_agent.artifacts.manifest import MANIFEST_NAME, verify_artifact
from edge_agent.artifacts.server import ArtifactServer
from edge_agent.artifacts.store import ArtifactStore, Links, check_sha256
from hybrid.errors import ArtifactError
from tests.edge_agent.artifacts.samples import sample_artifact
from tests.edge_agent.helpers import tamper


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    first = sample_artifact(root / "v1", "v1")
    second = sample_artifact(root / "v2", "v2")
    server = ArtifactServer(root).start()
    yield server, root, first, second
    server.stop()


def leftovers(store: ArtifactStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir() if p.name.startswith((".incoming", ".damaged")))


def test_fetch_over_http_verifies_and_stores_by_manifest_hash(served, tmp_path):
    server, _, first, _ = served
    store = ArtifactStore(tmp_path / "artifacts")
    manifest, fetched = store.add(server.url(first), first)
    assert fetched and manifest.model == "sample-model"
    assert verify_artifact(store.path(first), first) == manifest
    assert (store.path(first) / "extra" / "notes.txt").read_text() == "a file in a subfolder\n"
    assert leftovers(store) == []
    # Stored artifacts are read-only, and a verified copy is never fetched again (the server is gone).
    assert not os.access(store.path(first) / "tokenizer.json", os.W_OK) or os.geteuid() == 0
    server.stop()
    assert store.add(server.url(first), first) == (manifest, False)


def test_links_flip_atomically_and_restore(served, tmp_path):
    server, _, first, second = served
    store = ArtifactStore(tmp_path / "artifacts")
    store.add(server.url(first), first)
    store.add(server.url(second), second)
    assert store.flip(first) == Links()
    before = store.flip(second)
    assert before == Links(current=first)
    assert store.links() == Links(current=second, previous=first)
    assert os.readlink(store.root / "current") == second  # relative: the prefix may move
    assert store.flip(second) == Links(current=second, previous=first)  # flipping to itself keeps previous
    store.set_links(before)
    assert store.links() == Links(current=first)
    assert not (store.root / "previous").exists()


def test_tampered_file_on_the_server_is_refused_and_nothing_is_left(served, tmp_path):
    server, root, first, _ = served
    tamper(root / "v1" / "tokenizer.json")  # after the server verified it: its copy went bad
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(ArtifactError) as refused:
        store.add(server.url(first), first)
    message = str(refused.value)
    assert f"tokenizer.json from {server.url(first)}/ has sha256" in message
    assert "but the manifest says" in message and "modified or corrupted" in message
    assert store.stored() == [] and leftovers(store) == []


def test_wrong_pin_is_refused_before_any_file_is_fetched(served, tmp_path):
    server, _, first, second = served
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(
        ArtifactError, match=f"has sha256 {first}, but --sha256 pins {second}: this is not the artifact"
    ):
        store.add(server.url(first), second)
    assert store.stored() == [] and leftovers(store) == []


def test_unknown_hash_on_the_server_says_where_the_index_is(served, tmp_path):
    server, *_ = served
    missing = "ab" * 32
    with pytest.raises(ArtifactError, match="answered 404 Not Found.*GET /artifacts lists what this server has"):
        ArtifactStore(tmp_path / "artifacts").add(server.url(missing), missing)


def test_unreachable_server_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr("edge_agent.defaults.EDGE_FETCH_ATTEMPTS", 1)
    with pytest.raises(ArtifactError, match="could not reach http://127.0.0.1:1/artifacts/"):
        ArtifactStore(tmp_path / "artifacts").add("http://127.0.0.1:1/artifacts/" + "ab" * 32, "ab" * 32)


def test_local_folder_and_tarball_sources(served, tmp_path):
    _, root, first, second = served
    store = ArtifactStore(tmp_path / "artifacts")
    assert store.add(str(root / "v1"), first)[1]
    archive = tmp_path / "v2.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "v2", arcname="smollm2-int8")  # `tar czf x.tgz DIR`: the artifact one folder down
    assert store.add(str(archive), second)[1]
    assert verify_artifact(store.path(second), second)


def test_tarball_escaping_its_folder_is_refused(served, tmp_path):
    _, root, first, _ = served
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root / "v1" / MANIFEST_NAME, arcname="../../escaped.json")
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(ArtifactError, match="is not a readable tarball"):
        store.add(str(archive), first)
    assert not (tmp_path / "escaped.json").exists() and leftovers(store) == []


def test_damaged_stored_copy_is_fetched_again(served, tmp_path):
    server, _, first, _ = served
    store = ArtifactStore(tmp_path / "artifacts")
    store.add(server.url(first), first)
    tamper(store.path(first) / "model.onnx")
    assert store.add(server.url(first), first)[1]
    assert verify_artifact(store.path(first), first)


def test_prune_keeps_what_the_links_point_at(served, tmp_path):
    server, root, first, second = served
    third = sample_artifact(root / "v3", "v3")
    store = ArtifactStore(tmp_path / "artifacts")
    for sha in (first, second, third):
        store.add(server.url(sha), sha)
    store.flip(first)
    store.flip(second)
    assert store.prune() == [third]
    assert store.stored() == sorted([first, second])


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, "ab" * 33])
def test_pin_must_be_a_sha256(bad):
    with pytest.raises(ArtifactError, match="64 hex digits"):
        check_sha256(bad)
    assert check_sha256(" " + "AB" * 32 + "\n") == "ab" * 32


def test_a_download_that_breaks_off_resumes_where_it_stopped(served, tmp_path):
    server, root, first, _ = served
    whole = (root / "v1" / "model.onnx").read_bytes()
    ranges: list[str | None] = []

    class BreaksOnce(server.httpd.RequestHandlerClass):
        def _file(self, path, etag):
            if path.name != "model.onnx":
                return super()._file(path, etag)
            ranges.append(self.headers.get("Range"))
            if len(ranges) > 1:
                return super()._file(path, etag)
            # The link drops halfway: the headers promise the whole file, half of it comes.
            self.send_response(200)
            self.send_header("Content-Length", str(len(whole)))
            self.end_headers()
            self.wfile.write(whole[: len(whole) // 2])
            self.wfile.flush()
            self.close_connection = True

    server.httpd.RequestHandlerClass = BreaksOnce
    store = ArtifactStore(tmp_path / "artifacts")
    manifest, fetched = store.add(server.url(first), first)
    assert fetched and (store.path(first) / "model.onnx").read_bytes() == whole
    assert ranges == [None, f"bytes={len(whole) // 2}-"]
