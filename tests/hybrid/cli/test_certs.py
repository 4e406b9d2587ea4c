"""`hybrid certs init` and `hybrid certs issue`: a CA, its leaves, their names and their files' modes."""

from __future__ import annotations

import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from hybrid.cli import main


def names(path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in sans.get_values_for_type(x509.DNSName)} | {
        str(n) for n in sans.get_values_for_type(x509.IPAddress)
    }


def usages(path) -> set:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def signed_by(path, ca_path) -> bool:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):
        return False
    return True


def test_init_makes_a_ca_a_server_and_a_client_with_private_keys(tmp_path, capsys):
    folder = tmp_path / "pki"
    assert main(["certs", "init", str(folder), "--san", "edge-1.example", "--san", "10.0.0.5"]) == 0
    out = capsys.readouterr().out
    assert f"--tls-cert {folder / 'server.pem'}" in out and f"--tls-ca {folder / 'ca.pem'}" in out
    for key in ("ca.key", "server.key", "client.key"):
        assert stat.S_IMODE((folder / key).stat().st_mode) == 0o600, key
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert names(folder / "server.pem") == {"localhost", "127.0.0.1", "::1", "edge-1.example", "10.0.0.5"}
    assert usages(folder / "server.pem") == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert usages(folder / "client.pem") == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert signed_by(folder / "server.pem", folder / "ca.pem") and signed_by(folder / "client.pem", folder / "ca.pem")
    assert str(ipaddress.ip_address("::1")) in names(folder / "server.pem")


def test_init_refuses_to_replace_a_ca_unless_forced(tmp_path, capsys):
    folder = tmp_path / "pki"
    assert main(["certs", "init", str(folder)]) == 0
    first = (folder / "ca.pem").read_bytes()
    assert main(["certs", "init", str(folder)]) == 2
    assert "already holds a CA" in capsys.readouterr().err and (folder / "ca.pem").read_bytes() == first
    assert main(["certs", "init", str(folder), "--force"]) == 0
    assert (folder / "ca.pem").read_bytes() != first


def test_issue_signs_another_leaf_with_the_existing_ca(tmp_path):
    folder, out = tmp_path / "pki", tmp_path / "node"
    main(["certs", "init", str(folder)])
    assert main(["certs", "issue", "edge-7", "--ca-dir", str(folder), "--san", "10.1.2.3", "--out", str(out)]) == 0
    assert names(out / "edge-7.pem") == {"localhost", "127.0.0.1", "::1", "10.1.2.3"}
    assert signed_by(out / "edge-7.pem", folder / "ca.pem")
    assert stat.S_IMODE((out / "edge-7.key").stat().st_mode) == 0o600
    assert main(["certs", "issue", "ops", "--ca-dir", str(folder), "--client"]) == 0
    assert usages(folder / "ops.pem") == {ExtendedKeyUsageOID.CLIENT_AUTH}


@pytest.mark.parametrize("name", ["../evil", ".hidden", ""])
def test_issue_refuses_names_that_are_not_file_names(tmp_path, capsys, name):
    main(["certs", "init", str(tmp_path)])
    capsys.readouterr()
    assert main(["certs", "issue", name, "--ca-dir", str(tmp_path)]) == 2
    assert "cannot name a certificate file" in capsys.readouterr().err


def test_issue_without_a_ca_says_how_to_make_one(tmp_path, capsys):
    assert main(["certs", "issue", "edge-1", "--ca-dir", str(tmp_path / "none")]) == 2
    assert "hybrid certs init" in capsys.readouterr().err
