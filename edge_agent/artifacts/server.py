"""`hybrid artifacts serve DIR`: edge artifacts over HTTP, addressed by the sha256 of their manifest.

    GET /artifacts                          index: every artifact served, as JSON
    GET /artifacts/<sha256>                 one artifact's index entry
    GET /artifacts/<sha256>/manifest.json   its manifest, byte for byte (its sha256 is the address)
    GET /artifacts/<sha256>/<file>          a file the manifest lists (nothing else is served)

DIR is an artifact folder or a folder of them (one level down: what `hybrid export --out` wrote).
Artifacts are verified when found, and a folder added later is found at the first request for its
hash. A client checks everything again (edge_agent.artifacts.store), so this server is only a carrier;
`hybrid-edge install --artifact http://HOST:PORT/artifacts/<sha256> --sha256 <sha256>` fetches from it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from edge_agent.artifacts.manifest import MANIFEST_NAME, Manifest, manifest_sha256, verify_artifact
from hybrid.errors import ArtifactError

log = logging.getLogger("hybrid.artifacts")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ServedArtifact:
    sha256: str
    folder: Path
    manifest: Manifest

    def entry(self) -> dict:
        sizes = {name: (self.folder / name).stat().st_size for name in self.manifest.files}
        return {
            "sha256": self.sha256,
            "url": f"/artifacts/{self.sha256}",
            "model": self.manifest.model,
            "precision": self.manifest.precision,
            "files": sorted(self.manifest.files),
            "bytes": sum(sizes.values()),
        }


class ArtifactCatalog:
    """The artifacts under one folder, by manifest hash; rescanned when asked for a hash it does not know."""

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ArtifactError(
                f"{self.root} is not a folder: give the folder `hybrid export --out` wrote, or its parent"
            )
        self._by_sha: dict[str, ServedArtifact] = {}
        self._lock = threading.Lock()
        self.rescan()

    def _candidates(self) -> list[Path]:
        if (self.root / MANIFEST_NAME).is_file():
            return [self.root]
        return sorted(p for p in self.root.iterdir() if p.is_dir() and (p / MANIFEST_NAME).is_file())

    def rescan(self) -> None:
        with self._lock:
            known = {a.folder: a for a in self._by_sha.values()}
            found: dict[str, ServedArtifact] = {}
            for folder in self._candidates():
                try:
                    sha = manifest_sha256(folder)
                    previous = known.get(folder)
                    if previous is not None and previous.sha256 == sha:
                        found[sha] = previous  # verified already; a changed manifest changes the hash
                        continue
                    found[sha] = ServedArtifact(sha, folder, verify_artifact(folder, sha))
                    log.info("serving %s (%s) from %s", sha, found[sha].manifest.precision, folder)
                except ArtifactError as error:
                    log.warning("not serving %s: %s", folder, error)
            self._by_sha = found

    def get(self, sha256: str) -> ServedArtifact | None:
        with self._lock:
            artifact = self._by_sha.get(sha256)
        if artifact is None and _SHA256.match(sha256):
            self.rescan()
            with self._lock:
                artifact = self._by_sha.get(sha256)
        return artifact

    def all(self) -> list[ServedArtifact]:
        with self._lock:
            return sorted(self._by_sha.values(), key=lambda a: a.folder)


class _Handler(BaseHTTPRequestHandler):
    catalog: ArtifactCatalog
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)

    def _json(self, status: HTTPStatus, body: object) -> None:
        data = (json.dumps(body, indent=2) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _not_found(self, message: str) -> None:
        self._json(HTTPStatus.NOT_FOUND, {"error": message, "index": "/artifacts"})

    def _file(self, path: Path, etag: str) -> None:
        size = path.stat().st_size
        self.send_response(HTTPStatus.OK)
        self.send_header(
            "Content-Type", "application/json" if path.name == MANIFEST_NAME else "application/octet-stream"
        )
        self.send_header("Content-Length", str(size))
        self.send_header("ETag", f'"{etag}"')
        # Content-addressed: what a URL names never changes.
        self.send_header("Cache-Control", "public, max-age=31536000, immutable")
        self.end_headers()
        if self.command != "HEAD":
            with open(path, "rb") as source:
                shutil.copyfileobj(source, self.wfile, 1 << 20)

    def do_GET(self) -> None:
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(self.path).path.split("/") if p]
        if parts in ([], ["artifacts"]):
            self.catalog.rescan()
            return self._json(HTTPStatus.OK, {"artifacts": [a.entry() for a in self.catalog.all()]})
        if parts[0] != "artifacts":
            return self._not_found(f"{self.path} is not served here: artifacts are under /artifacts/<manifest sha256>")
        artifact = self.catalog.get(parts[1].lower())
        if artifact is None:
            return self._not_found(
                f"no artifact with manifest sha256 {parts[1]!r} here; GET /artifacts lists what this server has"
            )
        if len(parts) == 2:
            return self._json(HTTPStatus.OK, artifact.entry())
        name = "/".join(parts[2:])
        if name == MANIFEST_NAME:
            return self._file(artifact.folder / MANIFEST_NAME, artifact.sha256)
        if name not in artifact.manifest.files:
            return self._not_found(f"artifact {artifact.sha256[:12]} has no file {name!r}; its manifest lists them")
        return self._file(artifact.folder / name, artifact.manifest.files[name])

    do_HEAD = do_GET


class ArtifactServer:
    """The HTTP server on its own threads: ``start``, ``address``, ``url(sha)``, ``stop``."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0):
        self.catalog = ArtifactCatalog(root)
        handler = type("ArtifactHandler", (_Handler,), {"catalog": self.catalog})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.address = f"{host}:{self.httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def url(self, sha256: str) -> str:
        return f"http://{self.address}/artifacts/{sha256}"

    def start(self) -> ArtifactServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="artifact-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
