"""Signed artifacts: an ed25519 signature over the exact bytes of an artifact's manifest.json.

The manifest pins every other file by sha256, so one signature over it vouches for the whole
artifact. The signature travels beside the manifest as ``manifest.json.sig`` (a small JSON
document: algorithm, the signing key's id, the signature in base64); it is not listed in the
manifest, since it cannot hash itself.

    hybrid artifacts keygen KEY            KEY (private, mode 0600) and KEY.pub
    hybrid export --sign KEY ...           an exported artifact, signed
    hybrid artifacts sign DIR --key KEY    an existing artifact, signed
    hybrid-edge install/update --trust KEY.pub, hybrid edge serve --trust KEY.pub
                                           refuse what KEY did not sign

A private key may be kept encrypted: ``keygen`` encrypts it, and signing decrypts it, with the
passphrase in the environment variable HYBRID_SIGNING_PASSPHRASE when that is set.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_agent.artifacts.manifest import MANIFEST_NAME, SIGNATURE_NAME
from hybrid.errors import ArtifactError

ALGORITHM = "ed25519"
SIGNATURE_FORMAT = 1
PASSPHRASE_ENV = "HYBRID_SIGNING_PASSPHRASE"
PUBLIC_SUFFIX = ".pub"


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key for messages: sha256 of its 32 raw bytes, first 16 hex digits."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_path(private_key: Path) -> Path:
    return Path(str(private_key) + PUBLIC_SUFFIX)


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def generate_key_pair(private_path: Path, overwrite: bool = False) -> tuple[Path, Ed25519PublicKey]:
    """Writes a new signing key to ``private_path`` (mode 0600, created so) and its public key beside it (.pub).

    Returns the public key's path and the key. Refuses to replace an existing key unless ``overwrite``."""
    private_path = Path(private_path)
    public_path = public_key_path(private_path)
    existing = [str(p) for p in (private_path, public_path) if p.exists()]
    if existing and not overwrite:
        raise ArtifactError(
            f"{' and '.join(existing)} exist already: a new key would orphan every artifact the old one signed; "
            "choose another path, or pass --force to replace them"
        )
    private_key = Ed25519PrivateKey.generate()
    passphrase = _passphrase()
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.unlink(missing_ok=True)
    # Created 0600 from the start: the key is never readable by others, not even for an instant.
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public_key = private_key.public_key()
    public_path.write_bytes(
        public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return public_path, public_key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ArtifactError(
            f"cannot read the signing key {path} ({error.strerror}); make one with `hybrid artifacts keygen {path}`"
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=_passphrase())
    except TypeError:
        raise ArtifactError(
            f"the signing key {path} is encrypted: put its passphrase in the environment variable {PASSPHRASE_ENV}"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ArtifactError(
            f"{path} is not a PEM private key (or its passphrase in {PASSPHRASE_ENV} is wrong): give the private "
            "key `hybrid artifacts keygen` wrote, not its .pub"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ArtifactError(
            f"{path} is a {type(key).__name__}, but artifacts are signed with ed25519: make a key with "
            "`hybrid artifacts keygen`"
        )
    return key


def _read_public_key(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ArtifactError(
            f"cannot read the trusted key {path} ({error.strerror}); give the .pub file `hybrid artifacts keygen` wrote"
        ) from None
    if b"PRIVATE KEY" in data:
        raise ArtifactError(
            f"{path} is a private key: give the public key (its .pub) to --trust, and keep the private key off "
            "the nodes"
        )
    try:
        key = (
            serialization.load_ssh_public_key(data)
            if data.startswith(b"ssh-")
            else serialization.load_pem_public_key(data)
        )
    except (ValueError, UnsupportedAlgorithm):
        raise ArtifactError(
            f"{path} is not a public key in PEM (or OpenSSH) form: give the .pub file `hybrid artifacts keygen` wrote"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ArtifactError(f"{path} is a {type(key).__name__}, but artifacts are signed with ed25519")
    return key


@dataclass(frozen=True)
class TrustedKey:
    """The public key a node trusts: only artifacts whose manifest it signed are fetched, stored or served."""

    path: Path
    public_key: Ed25519PublicKey

    @classmethod
    def load(cls, path: Path | str) -> TrustedKey:
        path = Path(path)
        return cls(path, _read_public_key(path))

    @property
    def id(self) -> str:
        return key_id(self.public_key)

    def check(self, manifest: bytes, signature: bytes | None, where: str) -> None:
        """Raises ArtifactError, saying what to do, unless ``signature`` is this key's over ``manifest``."""
        if signature is None:
            raise ArtifactError(
                f"{where} is not signed (it has no {SIGNATURE_NAME}) and only artifacts signed by key {self.id} "
                f"({self.path}) are trusted: sign it with `hybrid artifacts sign DIR --key KEY`, or export it with "
                "`hybrid export --sign KEY`"
            )
        try:
            document = json.loads(signature)
            algorithm, signer = document["algorithm"], str(document["key_id"])
            raw = base64.b64decode(document["signature"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise ArtifactError(
                f"the {SIGNATURE_NAME} of {where} is not a signature file; sign the artifact again"
            ) from None
        if algorithm != ALGORITHM:
            raise ArtifactError(f"{where} is signed with {algorithm!r}; only {ALGORITHM} signatures are accepted")
        if signer != self.id:
            raise ArtifactError(
                f"{where} is signed by key {signer}, but only key {self.id} ({self.path}) is trusted: sign it with "
                "the trusted key, or trust the key that signed it"
            )
        try:
            self.public_key.verify(raw, manifest)
        except InvalidSignature:
            raise ArtifactError(
                f"the signature of {where} does not match its {MANIFEST_NAME}: the manifest was changed after it "
                "was signed; refuse this copy and fetch the artifact from its publisher again"
            ) from None


def signature_document(manifest: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The contents of manifest.json.sig for ``manifest``, the manifest file's exact bytes."""
    document = {
        "format": SIGNATURE_FORMAT,
        "algorithm": ALGORITHM,
        "key_id": key_id(private_key.public_key()),
        "signature": base64.b64encode(private_key.sign(manifest)).decode(),
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def sign_artifact(folder: Path, key_path: Path) -> Path:
    """Signs the artifact in ``folder`` with the private key at ``key_path``; returns the signature's path.

    The file is replaced, never written through: exported artifacts are hard-linked copies of the cache."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ArtifactError(f"{folder} holds no {MANIFEST_NAME}: sign the folder `hybrid export --out` wrote")
    document = signature_document(manifest_path.read_bytes(), load_private_key(key_path))
    target = folder / SIGNATURE_NAME
    temporary = folder / f".{SIGNATURE_NAME}.{os.getpid()}.tmp"
    temporary.write_bytes(document)
    os.replace(temporary, target)
    return target
