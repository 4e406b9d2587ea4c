"""A node's artifact store: verified artifacts by manifest hash, and the `current` and `previous` links.

    PREFIX/artifacts/
      <manifest sha256>/   one verified artifact; never written to after it was moved in
      current -> <sha>     what the agent serves
      previous -> <sha>    what served before it: where a rollback goes
      .incoming-*/         a fetch in progress; renamed into place once verified, removed when it fails

An artifact is addressed by the sha256 of its manifest, the hash an operator pins with ``--sha256``:
the manifest holds the sha256 of every other file, so that one hash vouches for the whole artifact.
It comes from an http(s) URL that serves the artifact's folder (``hybrid artifacts serve``: the
manifest at URL/manifest.json, each file at URL/<name>), from a tarball (URL or file), or from a
local folder. The manifest is checked against the pin (and, on a node that trusts a signing key,
its signature against that key) before anything else is fetched, and every file against the
manifest as it arrives, so a wrong, unsigned or tampered artifact is refused early, with the place
it came from named, and leaves nothing behind. A download that breaks off resumes where it stopped
(HTTP Range), so a model file is not fetched twice over a slow link.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from pydantic import ValidationError

from edge_agent import defaults
from edge_agent.artifacts.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    check_member_name,
    member_path,
    verify_artifact,
)
from edge_agent.artifacts.signing import TrustedKey
from hybrid.errors import ArtifactError

log = logging.getLogger("hybrid.edge.artifacts")

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2")
LINK_NAMES = ("current", "previous")
_CHUNK = 1 << 20


def check_sha256(value: str) -> str:
    """The pinned manifest hash in canonical form; ArtifactError when it cannot be one."""
    digest = value.strip().lower()
    if not SHA256_PATTERN.match(digest):
        raise ArtifactError(
            f"--sha256 must be the sha256 of the artifact's manifest.json, 64 hex digits (`hybrid artifacts hash DIR` "
            f"prints it, as does `hybrid artifacts serve`); got {value!r}"
        )
    return digest


# --- fetching --------------------------------------------------------------------------------


class Progress:
    """What fetching reports: one call per file started and per block copied. The default says nothing."""

    def start(self, name: str, total_bytes: int | None) -> None:
        pass

    def advance(self, name: str, done_bytes: int) -> None:
        pass


def is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https")


def _is_tarball(source: str) -> bool:
    path = urllib.parse.urlsplit(source).path if is_url(source) else source
    return path.lower().endswith(TARBALL_SUFFIXES)


def _error_detail(body: bytes) -> str:
    # `hybrid artifacts serve` answers {"error": ...}; other servers whatever they like.
    text = body.decode(errors="replace").strip()
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return " ".join(text.split())[:300]


def _open_url(url: str, offset: int = 0, missing_ok: bool = False) -> BinaryIO | None:
    """Opens ``url`` (from byte ``offset`` on), retrying what may pass (refused connections, timeouts, 5xx) but not
    a 4xx answer. None for a 404 when ``missing_ok``."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    for attempt in range(1, defaults.EDGE_FETCH_ATTEMPTS + 1):
        try:
            return urllib.request.urlopen(request, timeout=defaults.EDGE_FETCH_TIMEOUT_S)
        except urllib.error.HTTPError as error:
            if error.code == 404 and missing_ok:
                return None
            detail = _error_detail(error.read(2000))
            if error.code < 500 or attempt == defaults.EDGE_FETCH_ATTEMPTS:
                raise ArtifactError(
                    f"{url} answered {error.code} {error.reason}{': ' + detail if detail else ''}; check the URL "
                    "(`hybrid artifacts serve` lists what it serves at /artifacts)"
                ) from None
        except (urllib.error.URLError, OSError) as error:
            if attempt == defaults.EDGE_FETCH_ATTEMPTS:
                reason = getattr(error, "reason", error)
                raise ArtifactError(
                    f"could not reach {url} after {attempt} attempts ({reason}); check the address and that the "
                    "artifact server is up"
                ) from None
        log.warning("fetching %s failed (attempt %d of %d); retrying", url, attempt, defaults.EDGE_FETCH_ATTEMPTS)
        time.sleep(min(2.0**attempt, 10.0))
    raise AssertionError("unreachable")


def _read_url(url: str, missing_ok: bool = False) -> bytes | None:
    response = _open_url(url, missing_ok=missing_ok)
    if response is None:
        return None
    with response:
        return response.read()


def _download(url: str, dest: Path, name: str, progress: Progress) -> str:
    """Fetches ``url`` into ``dest``; returns its sha256. A transfer that breaks off resumes from the bytes it has
    (HTTP Range), or starts over where the server ignores Range."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest, done, total = hashlib.sha256(), 0, None
    with open(dest, "wb") as out:
        for attempt in range(1, defaults.EDGE_FETCH_ATTEMPTS + 1):
            response = _open_url(url, offset=done)
            try:
                with response:
                    if done and response.status != 206:
                        out.seek(0)
                        out.truncate()
                        digest, done = hashlib.sha256(), 0
                    length = response.headers.get("Content-Length")
                    if total is None:
                        total = done + int(length) if length else None
                        progress.start(name, total)
                    while block := response.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        progress.advance(name, done)
                if total is None or done >= total:
                    return digest.hexdigest()
                failure = f"the connection closed at byte {done} of {total}"
            except (OSError, http.client.HTTPException) as error:
                failure = f"{type(error).__name__} at byte {done}: {error}"
            if attempt == defaults.EDGE_FETCH_ATTEMPTS:
                raise ArtifactError(
                    f"the download of {url} broke off {attempt} times (last: {failure}); check the link to the "
                    "artifact server and try again"
                )
            log.warning("fetching %s broke off (%s); resuming from byte %d", url, failure, done)
            time.sleep(min(2.0**attempt, 10.0))
    raise AssertionError("unreachable")


def _copy_hashing(reader: BinaryIO, dest: Path, name: str, total: int | None, progress: Progress) -> str:
    digest = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    progress.start(name, total)
    done = 0
    with open(dest, "wb") as out:
        while block := reader.read(_CHUNK):
            out.write(block)
            digest.update(block)
            done += len(block)
            progress.advance(name, done)
    return digest.hexdigest()


def _read_pinned_manifest(
    data: bytes, expected_sha256: str, where: str, signature: bytes | None, trusted: TrustedKey | None
) -> Manifest:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ArtifactError(
            f"the manifest at {where} has sha256 {actual}, but --sha256 pins {expected_sha256}: this is not the "
            "artifact you pinned; check the URL and the hash (`hybrid artifacts hash DIR` prints an artifact's)"
        )
    if trusted is not None:
        trusted.check(data, signature, where)
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as error:
        raise ArtifactError(f"the manifest at {where} is not valid ({error}); rebuild the artifact") from None
    for name in manifest.files:
        check_member_name(name, f"the manifest at {where}")
    return manifest


def _check_file(actual: str, expected: str, name: str, where: str) -> None:
    if actual != expected:
        raise ArtifactError(
            f"{name} from {where} has sha256 {actual} but the manifest says {expected}: the copy there was modified "
            "or corrupted; fix it (or fetch from another copy) and try again"
        )


def _write_manifest_and_signature(into: Path, data: bytes, signature: bytes | None) -> None:
    (into / MANIFEST_NAME).write_bytes(data)
    if signature is not None:
        (into / SIGNATURE_NAME).write_bytes(signature)


def _fetch_folder_url(url: str, expected_sha256: str, into: Path, progress: Progress, trusted: TrustedKey | None):
    base = url.rstrip("/") + "/"
    data = _read_url(base + MANIFEST_NAME)
    signature = _read_url(base + SIGNATURE_NAME, missing_ok=True)
    manifest = _read_pinned_manifest(data, expected_sha256, base + MANIFEST_NAME, signature, trusted)
    for name, expected in manifest.files.items():
        actual = _download(base + urllib.parse.quote(name), into / name, name, progress)
        _check_file(actual, expected, name, base)
    _write_manifest_and_signature(into, data, signature)


def _copy_folder(folder: Path, expected_sha256: str, into: Path, progress: Progress, trusted: TrustedKey | None):
    if not (folder / MANIFEST_NAME).is_file():
        raise ArtifactError(f"{folder} holds no {MANIFEST_NAME}: give the folder `hybrid export --out` wrote")
    data = (folder / MANIFEST_NAME).read_bytes()
    signature = (folder / SIGNATURE_NAME).read_bytes() if (folder / SIGNATURE_NAME).is_file() else None
    manifest = _read_pinned_manifest(data, expected_sha256, str(folder / MANIFEST_NAME), signature, trusted)
    for name, expected in manifest.files.items():
        source = member_path(folder, name)
        if not source.is_file():
            raise ArtifactError(f"{source} is listed in the manifest but missing; copy the whole artifact again")
        with open(source, "rb") as reader:
            actual = _copy_hashing(reader, into / name, name, source.stat().st_size, progress)
        _check_file(actual, expected, name, str(folder))
    _write_manifest_and_signature(into, data, signature)


def _unpack_tarball(source: str, expected_sha256: str, into: Path, progress: Progress, trusted: TrustedKey | None):
    archive = into / ".download"
    if is_url(source):
        _download(source, archive, PurePosixPath(urllib.parse.urlsplit(source).path).name, progress)
    else:
        shutil.copyfile(source, archive)
    if not hasattr(tarfile, "data_filter"):
        raise ArtifactError(
            "unpacking a tarball safely needs Python 3.10.12 or 3.11.4 or newer; serve the folder instead"
        )
    try:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths, links out of the folder, devices and setuid bits.
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise ArtifactError(
            f"{source} is not a readable tarball ({error}); give an artifact folder or tarball"
        ) from None
    finally:
        archive.unlink(missing_ok=True)
    # `tar -C DIR .` and `tar DIR` are both common: accept the artifact at the top or in one folder.
    entries = list(into.iterdir())
    if not (into / MANIFEST_NAME).is_file() and len(entries) == 1 and entries[0].is_dir():
        for entry in list(entries[0].iterdir()):
            entry.rename(into / entry.name)
        entries[0].rmdir()
    if not (into / MANIFEST_NAME).is_file():
        raise ArtifactError(f"{source} holds no {MANIFEST_NAME}: pack the folder `hybrid export --out` wrote")
    signature = (into / SIGNATURE_NAME).read_bytes() if (into / SIGNATURE_NAME).is_file() else None
    _read_pinned_manifest((into / MANIFEST_NAME).read_bytes(), expected_sha256, source, signature, trusted)


def fetch_artifact(
    source: str,
    expected_sha256: str,
    into: Path,
    progress: Progress | None = None,
    trusted: TrustedKey | None = None,
) -> Manifest:
    """Copies the artifact at ``source`` into the empty folder ``into`` and verifies it against the pinned hash,
    and against the trusted key when given (its signature comes along when there is one, trusted or not).

    ``source``: an http(s) URL of an artifact folder (as `hybrid artifacts serve` serves it) or of a tarball,
    a local folder, or a local tarball. Raises ArtifactError, naming the source, on any mismatch."""
    progress = progress or Progress()
    into = Path(into)
    if _is_tarball(source):
        _unpack_tarball(source, expected_sha256, into, progress, trusted)
    elif is_url(source):
        _fetch_folder_url(source, expected_sha256, into, progress, trusted)
    elif Path(source).is_dir():
        _copy_folder(Path(source), expected_sha256, into, progress, trusted)
    elif Path(source).is_file() and tarfile.is_tarfile(source):
        _unpack_tarball(source, expected_sha256, into, progress, trusted)
    else:
        raise ArtifactError(
            f"{source} is neither an http(s) URL, an artifact folder nor a tarball: give one of those to --artifact"
        )
    # Belt and braces: the same check the agent makes before it serves (and no file the manifest lacks).
    return verify_artifact(into, expected_sha256, trusted)


# --- the store --------------------------------------------------------------------------------


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Holds an flock on ``path``, created when missing. Never truncated and never reached through a link: on an
    installed node the folder belongs to the agent's unprivileged user, and the updater runs as root."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(descriptor, "r+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Links:
    """Where `current` and `previous` point: manifest hashes, None when the link is absent."""

    current: str | None = None
    previous: str | None = None


class ArtifactStore:
    """The store of one node. With a trusted key, only artifacts that key signed count as stored or are added."""

    def __init__(self, root: Path, trusted: TrustedKey | None = None):
        self.root = Path(root)
        self.trusted = trusted

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    def links(self) -> Links:
        return Links(*(self._read_link(name) for name in LINK_NAMES))

    def _read_link(self, name: str) -> str | None:
        try:
            target = os.readlink(self.root / name)
        except OSError:
            return None
        sha = Path(target).name
        return sha if SHA256_PATTERN.match(sha) else None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serializes changes to the store (links, adds, prunes) between the updater and the agent."""
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root / ".lock"):
            yield

    def set_links(self, links: Links) -> None:
        """Points both links as given, each flipped atomically (a new symlink renamed over the old one)."""
        for name, sha in zip(LINK_NAMES, (links.current, links.previous)):
            link = self.root / name
            if sha is None:
                link.unlink(missing_ok=True)
                continue
            temporary = self.root / f".{name}.{os.getpid()}.tmp"
            temporary.unlink(missing_ok=True)
            # Relative, so the prefix can be moved or mounted elsewhere.
            os.symlink(sha, temporary)
            os.replace(temporary, link)

    def flip(self, sha256: str) -> Links:
        """Makes ``sha256`` current and the old current previous; returns the links as they were."""
        before = self.links()
        previous = before.current if before.current != sha256 else before.previous
        self.set_links(Links(current=sha256, previous=previous))
        return before

    def verified(self, sha256: str) -> Manifest | None:
        """The manifest of the stored artifact when every file still matches; None when absent or damaged."""
        if not self.path(sha256).is_dir():
            return None
        try:
            return verify_artifact(self.path(sha256), sha256, self.trusted)
        except ArtifactError as error:
            log.warning("stored artifact %s fails its checks (%s); it will be fetched again", sha256[:12], error)
            return None

    def add(self, source: str, sha256: str, progress: Progress | None = None) -> tuple[Manifest, bool]:
        """Fetches and verifies the artifact into the store unless a verified copy is there already.

        Returns (manifest, fetched). On any failure nothing of the attempt is left behind."""
        manifest = self.verified(sha256)
        if manifest is not None:
            return manifest, False
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".incoming-{sha256[:12]}-", dir=self.root))
        try:
            manifest = fetch_artifact(source, sha256, staging, progress, self.trusted)
            # Readable by the agent whatever user it runs as; never edited in place.
            for path in [staging, *staging.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o444)
            with self.locked():
                damaged = self.path(sha256)
                if damaged.exists():
                    # A damaged copy goes only once its replacement is complete.
                    aside = self.root / f".damaged-{sha256[:12]}-{os.getpid()}"
                    damaged.rename(aside)
                    staging.rename(damaged)
                    shutil.rmtree(aside, ignore_errors=True)
                else:
                    staging.rename(damaged)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return manifest, True

    def stored(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if SHA256_PATTERN.match(p.name) and p.is_dir())

    def prune(self, keep: set[str] = frozenset()) -> list[str]:
        """Removes every artifact but ``keep`` and what the links point at; returns the removed hashes."""
        with self.locked():
            links = self.links()
            kept = set(keep) | {sha for sha in (links.current, links.previous) if sha}
            removed = [sha for sha in self.stored() if sha not in kept]
            for sha in removed:
                shutil.rmtree(self.path(sha), ignore_errors=True)
            # What a killed fetch left behind (callers hold the node's update lock, so none is in progress).
            for leftover in [*self.root.glob(".incoming-*"), *self.root.glob(".damaged-*")]:
                shutil.rmtree(leftover, ignore_errors=True)
        return removed
