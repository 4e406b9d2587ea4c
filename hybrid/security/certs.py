"""A local certificate authority and its leaf certificates, for mTLS between the tiers (`hybrid certs`).

``init_ca_folder`` makes a CA and two leaves in a folder: ``server`` (usable as a server and as a client, so that
the router presents it both to its callers and to the replicas it calls) and ``client`` (a caller's). ``issue``
adds another leaf from the folder's CA. Keys are ECDSA P-256 and are written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
# Names every local server answers to.
LOOPBACK_SANS = ("localhost", "127.0.0.1", "::1")
CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 365
# Clocks of two machines differ a little; a certificate made just now must already be valid on both.
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class LeafFiles:
    """Where one leaf's certificate and key were written."""

    name: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A CA's certificate and key, loaded."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _subject(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hybrid"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _san_entry(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 from the first byte: never readable by others, not even for a moment.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(common_name: str = "hybrid local CA", valid_days: int = CA_VALID_DAYS) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_subject(common_name))
        .issuer_name(_subject(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def make_leaf(
    authority: Authority,
    common_name: str,
    sans: list[str] | tuple[str, ...] = (),
    server: bool = True,
    valid_days: int = LEAF_VALID_DAYS,
    not_before: datetime.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf signed by ``authority``: for servers and clients both when ``server``, else for clients only.
    ``not_before`` moves its validity window (an expired certificate, for tests of refusal)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or datetime.datetime.now(datetime.timezone.utc) - CLOCK_SKEW
    usages = (
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        if server
        else [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject(common_name))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), critical=False)
    )
    names = list(dict.fromkeys(sans or ([common_name] if server else [])))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san_entry(n) for n in names]), critical=False)
    return builder.sign(authority.key, hashes.SHA256()), key


def write_authority(folder: Path, authority: Authority) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _write_cert(folder / CA_CERT_FILE, authority.cert)
    _write_key(folder / CA_KEY_FILE, authority.key)


def load_authority(folder: Path) -> Authority:
    cert_path, key_path = folder / CA_CERT_FILE, folder / CA_KEY_FILE
    for path in (cert_path, key_path):
        if not path.is_file():
            raise ValueError(f"{path} does not exist: make a CA first with `hybrid certs init {folder}`")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ValueError(f"{key_path} is not the key of {cert_path}: give the folder `hybrid certs init` made")
    return Authority(cert, key)


def issue(
    folder: Path,
    name: str,
    sans: list[str] | tuple[str, ...] = (),
    server: bool = True,
    valid_days: int = LEAF_VALID_DAYS,
    out: Path | None = None,
) -> LeafFiles:
    """Signs a new leaf ``name`` with the CA in ``folder`` and writes ``name.pem`` and ``name.key`` to ``out``
    (the CA's folder by default). A server leaf answers to loopback (local probes and checks) and to its ``sans``
    (to ``name`` when none are given)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"{name!r} cannot name a certificate file: use letters, digits, '-' or '_'")
    authority = load_authority(folder)
    if server:
        sans = [*LOOPBACK_SANS, *(sans or [name])]
    cert, key = make_leaf(authority, name, sans, server=server, valid_days=valid_days)
    out = out or folder
    out.mkdir(parents=True, exist_ok=True)
    files = LeafFiles(name, out / f"{name}.pem", out / f"{name}.key")
    _write_cert(files.cert, cert)
    _write_key(files.key, key)
    return files


def init_ca_folder(folder: Path, sans: list[str] | tuple[str, ...] = (), force: bool = False) -> list[LeafFiles]:
    """A new CA in ``folder``, a ``server`` leaf for loopback and ``sans``, and a ``client`` leaf."""
    if (folder / CA_KEY_FILE).exists() and not force:
        raise ValueError(
            f"{folder} already holds a CA ({CA_KEY_FILE}); issue more leaves with `hybrid certs issue --ca-dir "
            f"{folder}`, or pass --force to replace it (every certificate it signed stops being trusted)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    write_authority(folder, make_ca())
    return [issue(folder, "server", [*LOOPBACK_SANS, *sans], server=True), issue(folder, "client", server=False)]
