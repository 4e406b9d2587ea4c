"""`hybrid up` runs every gRPC hop with mutual TLS by default, on certificates it makes and removes itself."""

from __future__ import annotations

import stat

import pytest

from hybrid import tiers
from hybrid.cli import main
from hybrid.security.tls import TlsSettings


class RecordingTier:
    """A tier that notes the TLS settings `hybrid up` gave it, and whether its files existed then."""

    extra = "fake"

    def __init__(self, name: str, plaintext_tiers: tuple[str, ...] = ()):
        self.name = name
        self.plaintext_tiers = plaintext_tiers
        self.tls: TlsSettings | None = None
        self.key_mode: int | None = None

    def available(self) -> bool:
        return True

    def add_commands(self, commands) -> None:
        pass

    def start_local(self, stack: tiers.LocalStack):
        self.tls = stack.tls
        if stack.tls.key is not None:
            self.key_mode = stat.S_IMODE(stack.tls.key.stat().st_mode)
            self.ca_key_left = (stack.tls.ca.parent / "ca.key").exists()
        return lambda: None


@pytest.fixture
def recording_tiers(monkeypatch):
    fakes = {"edge": RecordingTier("edge"), "cloud": RecordingTier("cloud", ("private", "public"))}
    monkeypatch.setattr(tiers, "plugins", lambda: fakes)
    return fakes


UP = ["up", "--no-cloud", "--once", "--edge-port", "0", "--router-port", "0", "--http-port", "0"]


def test_up_gives_every_tier_certificates_made_at_start_and_removes_them_at_stop(recording_tiers, tmp_path, capsys):
    assert main([*UP, "--state-dir", str(tmp_path)]) == 0
    tls = recording_tiers["edge"].tls
    assert tls.cert is not None and tls.ca is not None and tls.cert.parent.name.startswith("hybrid-up-tls-")
    assert recording_tiers["edge"].key_mode == 0o600
    assert not recording_tiers["edge"].ca_key_left, "the CA key outlived the certificates it was made for"
    assert not tls.cert.parent.exists(), "the stack's certificates were left behind"
    err = capsys.readouterr().err
    assert "--tls-cert" in err and "https://" in err


def test_up_plaintext_gives_no_tls(recording_tiers, tmp_path):
    assert main([*UP, "--state-dir", str(tmp_path), "--plaintext"]) == 0
    assert recording_tiers["edge"].tls == TlsSettings()


def test_up_serves_with_the_certificates_given_and_keeps_them(recording_tiers, tmp_path, monkeypatch):
    from hybrid.security import certs

    pki = tmp_path / "pki"
    certs.init_ca_folder(pki)
    monkeypatch.setenv("HYBRID_TLS_CERT", str(pki / "server.pem"))
    monkeypatch.setenv("HYBRID_TLS_KEY", str(pki / "server.key"))
    monkeypatch.setenv("HYBRID_TLS_CA", str(pki / "ca.pem"))
    assert main([*UP, "--state-dir", str(tmp_path / "state")]) == 0
    assert recording_tiers["edge"].tls == TlsSettings(cert=pki / "server.pem", key=pki / "server.key", ca=pki / "ca.pem")
    assert (pki / "server.key").exists() and (pki / "ca.key").exists(), "hybrid up removed files it did not make"
