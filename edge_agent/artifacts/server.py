"""`hybrid artifacts serve DIR`: edge artifacts over HTTP, addressed by the sha256 of their manifest.

    GET /artifacts                          index: every artifact served, as JSON
    GET /artifacts/<sha256>                 one artifact's index entry
    GET /artifacts/<sha256>/manifest.json   its manifest, byte for byte (its sha256 is the address)
    GET /artifacts/<sha256>/manifest.json.sig  its signature, when it was signed (404 otherwise)
    GET /artifacts/<sha256>/<file>          a file the manifest lists (nothing else is served)

DIR is an artifact folder or a folder of them (one level down: what `hybrid export --out` wrote).
Artifacts are verified when found, and a folder added later is found at the first request for its
hash. A client checks everything again (edge_agent.artifacts.store), so this server is only a carrier;
`hybrid-edge install --artifact https://HOST:PORT/artifacts/<sha256> --sha256 <sha256>` fetches from it.

Only files inside an artifact's folder are ever served: a manifest naming `../x`, an absolute path or a
symlink leading out is refused when the artifact is found, and every file is checked again when it is
served. Files answer Range requests, so a node resumes a broken download. With a certificate and key the
server speaks HTTPS; without them it serves plain HTTP on loopback only, unless told `plaintext`.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from edge_agent.artifacts.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    manifest_sha256,
    member_path,
    verify_artifact,
)
from edge_agent.config import is_loopback
from hybrid.errors import ArtifactError

log = logging.getLogger("hybrid.artifacts")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_BLOCK = 1 << 20
# A connection that sends nothing (no handshake, no request) for this long is closed.
HANDSHAKE_TIMEOUT_S = 30.0


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
    timeout = HANDSHAKE_TIMEOUT_S

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

    def _byte_range(self, size: int) -> tuple[int, int] | None:
        """(first, last) byte asked for by a single Range, None for the whole file; ValueError if unsatisfiable."""
        header = self.headers.get("Range")
        match = _RANGE.match(header.strip()) if header else None
        if match is None:
            return None  # absent, or a form this server does not do (several ranges): the whole file
        first, last = match.groups()
        if not first:  # the last N bytes
            first, last = max(size - int(last or 0), 0), size - 1
        first, last = int(first), min(int(last) if last else size - 1, size - 1)
        if first >= size or first > last:
            raise ValueError(f"bytes {header} of a {size}-byte file")
        return first, last

    def _file(self, path: Path, etag: str) -> None:
        size = path.stat().st_size
        try:
            span = self._byte_range(size)
        except ValueError as error:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return log.debug("unsatisfiable range: %s", error)
        first, last = span or (0, size - 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if span else HTTPStatus.OK)
        self.send_header(
            "Content-Type", "application/json" if path.name == MANIFEST_NAME else "application/octet-stream"
        )
        self.send_header("Content-Length", str(last - first + 1))
        if span:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        # Content-addressed: what a URL names never changes.
        self.send_header("Cache-Control", "public, max-age=31536000, immutable")
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as source:
            source.seek(first)
            left = last - first + 1
            while left > 0 and (block := source.read(min(_BLOCK, left))):
                self.wfile.write(block)
                left -= len(block)

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
        if name == SIGNATURE_NAME:
            signature = artifact.folder / SIGNATURE_NAME
            if not signature.is_file():
                return self._not_found(f"artifact {artifact.sha256[:12]} is not signed")
            return self._file(signature, artifact.sha256 + ".sig")
        if name not in artifact.manifest.files:
            return self._not_found(f"artifact {artifact.sha256[:12]} has no file {name!r}; its manifest lists them")
        try:
            # Checked again at every request: a file may have been swapped for a link since the scan.
            path = member_path(artifact.folder, name)
        except ArtifactError as error:
            log.warning("refused to serve %s: %s", name, error)
            return self._not_found(f"artifact {artifact.sha256[:12]} has no file {name!r} inside it")
        return self._file(path, artifact.manifest.files[name])

    do_HEAD = do_GET


@dataclass(frozen=True)
class ServerTls:
    """The HTTPS certificate (chain) and its private key, PEM files."""

    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        for flag, path in (("--tls-cert", self.cert), ("--tls-key", self.key)):
            if not Path(path).is_file():
                raise ArtifactError(f"{flag} {path} does not exist: give the PEM file")
        try:
            context.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as error:
            raise ArtifactError(
                f"--tls-cert {self.cert} and --tls-key {self.key} do not make a certificate and its key ({error.reason}):"
                " give the PEM certificate and the private key it was issued for"
            ) from None
        return context


class _HttpServer(ThreadingHTTPServer):
    """Threads per connection; with a TLS context, each handshake happens on its connection's thread, so that a
    slow or silent client never holds up the others."""

    daemon_threads = True
    tls_context: ssl.SSLContext | None = None

    def finish_request(self, request, client_address) -> None:
        if self.tls_context is not None:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                request = self.tls_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as error:
                log.debug("TLS handshake with %s failed: %s", client_address, error)
                return
        super().finish_request(request, client_address)


class ArtifactServer:
    """The HTTP(S) server on its own threads: ``start``, ``address``, ``url(sha)``, ``stop``.

    Without ``tls`` it binds loopback only, unless ``plaintext`` says that plain HTTP beyond it is meant."""

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ServerTls | None = None,
        plaintext: bool = False,
    ):
        if tls is None and not plaintext and not is_loopback(host):
            raise ArtifactError(
                f"serving artifacts on {host} without TLS would hand them to anyone on the path: give --tls-cert and "
                "--tls-key, bind 127.0.0.1, or pass --plaintext to serve plain HTTP anyway (nodes still check every "
                "hash, and the signature when they trust a key)"
            )
        context = tls.context() if tls is not None else None
        self.catalog = ArtifactCatalog(root)
        handler = type("ArtifactHandler", (_Handler,), {"catalog": self.catalog})
        self.httpd = _HttpServer((host, port), handler)
        self.httpd.tls_context = context
        self.scheme = "https" if context is not None else "http"
        self.address = f"{host}:{self.httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def url(self, sha256: str) -> str:
        return f"{self.scheme}://{self.address}/artifacts/{sha256}"

    def start(self) -> ArtifactServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="artifact-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
