"""A small artifact folder for tests of what carries artifacts (no model runs from it)."""

from __future__ import annotations

from pathlib import Path

from edge_agent.artifacts.manifest import MODEL_FILE, Manifest, hash_files, manifest_sha256, write_manifest


def sample_artifact(folder: Path, content: str = "v1") -> str:
    """Writes an artifact whose files are small stand-ins; returns its manifest sha256."""
    folder.mkdir(parents=True)
    (folder / MODEL_FILE).write_bytes(f"model {content}\n".encode() * 1000)
    (folder / "tokenizer.json").write_text(f'{{"version": "{content}"}}\n')
    (folder / "extra").mkdir()
    (folder / "extra" / "notes.txt").write_text("a file in a subfolder\n")
    manifest = Manifest(
        model="sample-model",
        source_fingerprint="0" * 64,
        precision="int8-b32",
        full_precision=False,
        opset=18,
        context_window=2048,
        files=hash_files(folder),
    )
    write_manifest(folder, manifest)
    return manifest_sha256(folder)


def signing_keys(folder: Path, name: str = "release") -> tuple[Path, Path]:
    """A fresh ed25519 key pair made at test time: (private key, public key)."""
    from edge_agent.artifacts.signing import generate_key_pair

    private = folder / name
    public, _ = generate_key_pair(private)
    return private, public


def rewrite_and_rehash(folder: Path, name: str, data: bytes) -> str:
    """What an attacker with write access does: changes a file and writes a manifest that pins the new hashes.

    Files are replaced, never written through (artifact copies share hard links). Returns the new manifest sha256."""
    from edge_agent.artifacts.manifest import MANIFEST_NAME, read_manifest

    (folder / name).unlink(missing_ok=True)
    (folder / name).write_bytes(data)
    manifest = read_manifest(folder)
    (folder / MANIFEST_NAME).unlink()
    write_manifest(folder, manifest.model_copy(update={"files": hash_files(folder)}))
    return manifest_sha256(folder)


def loopback_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made at test time: (cert, key); the cert is its own CA."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "artifact server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
