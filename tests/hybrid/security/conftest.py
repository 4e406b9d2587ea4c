"""Certificates made at test time with `hybrid certs`' own code: a CA with its leaves, and a stranger CA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from hybrid.security import certs
from hybrid.security.tls import TlsSettings


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
