"""Certificates made at test time with `hybrid certs`' own code: a CA with its leaves, and a stranger CA."""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hybrid.security import certs
from hybrid.security.tls import TlsSettings
from hybrid.serving.background import BackgroundLoop
from hybrid.serving.grpc_shell import INFERENCE_SERVICE, ServerShell, inference_handler
from hybrid.v1 import inference_pb2 as pb


@dataclass
class Pki:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / certs.CA_CERT_FILE

    def leaf(self, name: str) -> TlsSettings:
        return TlsSettings(cert=self.folder / f"{name}.pem", key=self.folder / f"{name}.key", ca=self.ca)

    @property
    def server(self) -> TlsSettings:
        return self.leaf("server")

    @property
    def client(self) -> TlsSettings:
        return self.leaf("client")


@pytest.fixture
def pki(tmp_path) -> Pki:
    folder = tmp_path / "pki"
    certs.init_ca_folder(folder)
    return Pki(folder)


@pytest.fixture
def stranger_pki(tmp_path) -> Pki:
    """Another CA, with leaves of the same names: trusted by nobody in ``pki``."""
    folder = tmp_path / "stranger"
    certs.init_ca_folder(folder)
    return Pki(folder)


def presented_certificate(address: str, ca: Path, client: TlsSettings | None = None, alpn: str = "h2") -> bytes:
    """The DER certificate a TLS server presents to a new connection now."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    context.set_alpn_protocols([alpn])
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as connection:
            return connection.getpeercert(binary_form=True)


def der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)


def rotate(pki: Pki, name: str = "server", server: bool = True) -> None:
    """Replaces a leaf's pair with a new one of the same CA, each file atomically (certificate first)."""
    fresh = certs.issue(pki.folder, f"{name}-next", certs.LOOPBACK_SANS if server else (), server=server)
    os.replace(fresh.cert, pki.folder / f"{name}.pem")
    os.replace(fresh.key, pki.folder / f"{name}.key")


class CountingReplica:
    """Answers ``max_new_tokens`` chunks, one every 20 ms, over mutual TLS; ``peers`` holds the certificate (DER) each
    call's client presented."""

    def __init__(self, tls: TlsSettings):
        self.shell = ServerShell("127.0.0.1", 0, [INFERENCE_SERVICE], tls=tls)
        self.shell.server.add_generic_rpc_handlers((inference_handler(self.generate, self.get_load),))
        self.address = self.shell.address
        self.peers: list[bytes] = []

    async def start(self) -> None:
        await self.shell.start()

    async def stop(self) -> None:
        await self.shell.stop(0)

    async def generate(self, message, context):
        import asyncio

        (pem,) = context.auth_context()["x509_pem_cert"]
        self.peers.append(x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER))
        count = message.max_new_tokens or 1
        for index in range(count):
            await asyncio.sleep(0.02)
            last = index == count - 1
            yield pb.GenerateResponse(text=str(index % 10), finish_reason=pb.LENGTH if last else 0)

    async def get_load(self, message, context):
        return pb.LoadReport(replica_id="tls")


@pytest.fixture
def serve():
    loops: list[tuple[BackgroundLoop, CountingReplica]] = []

    def start(tls: TlsSettings) -> CountingReplica:
        loop = BackgroundLoop("tls-replica")
        replica = loop.start_server(CountingReplica, tls)
        loops.append((loop, replica))
        return replica

    yield start
    for loop, replica in loops:
        loop.call(replica.stop())
        loop.close()
