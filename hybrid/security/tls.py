"""TLS on every hop: mutual TLS for gRPC servers and channels, server TLS for the HTTP front.

Certificate, key and CA are files (`hybrid certs` makes them), named by flags (``--tls-cert``, ``--tls-key``,
``--tls-ca``), by the environment (``HYBRID_TLS_CERT``, ``HYBRID_TLS_KEY``, ``HYBRID_TLS_CA``) or by a config
file; a flag wins over the environment. A gRPC server with TLS requires a client certificate signed by the CA.

Files are read again when they change: a server picks the new pair for each new handshake (streams already
running keep their connection), a channel's owner reopens it (``ClientCredentials.changed``). A rotation is taken
only once certificate and key match, so one written before the other is never served half-done.

Without TLS a server binds loopback only (``check_bind``), unless plaintext is asked for explicitly
(``--plaintext``, ``HYBRID_PLAINTEXT=1``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hybrid.errors import HybridError

log = logging.getLogger("hybrid.security")

ENV_CERT = "HYBRID_TLS_CERT"
ENV_KEY = "HYBRID_TLS_KEY"
ENV_CA = "HYBRID_TLS_CA"
ENV_PLAINTEXT = "HYBRID_PLAINTEXT"

TLS_HINT = (
    f"give --tls-cert, --tls-key and --tls-ca (or {ENV_CERT}, {ENV_KEY}, {ENV_CA}); `hybrid certs init DIR` makes them"
)


class TlsConfigError(HybridError):
    """TLS settings or files that cannot be used as given; the message says what to change. Not a ValueError, so
    that pydantic passes it on as it is rather than inside a validation report."""

    code = grpc.StatusCode.FAILED_PRECONDITION


def _env_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine alone ("localhost", 127.0.0.0/8, ::1)."""
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere, or "" (every interface)


class TlsSettings(BaseModel):
    """Where a server's or client's TLS material lies; nothing set means no TLS."""

    model_config = ConfigDict(frozen=True)

    cert: Path | None = Field(
        default=None,
        description="PEM certificate chain this side presents: a server's to its callers, a client's to the server.",
    )
    key: Path | None = Field(default=None, description="PEM private key of `cert` (keep it mode 0600).")
    ca: Path | None = Field(
        default=None,
        description="PEM CA bundle the other side's certificate must chain to (clients of a server, or the server "
        "a client calls).",
    )
    plaintext: bool = Field(
        default=False,
        description="No TLS, on purpose: a server may then bind addresses other than loopback unencrypted (behind "
        "a trusted network only; without it, a server with no certificate binds loopback alone), and a client "
        "ignores the HYBRID_TLS_* variables.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TlsSettings:
        if (self.cert is None) != (self.key is None):
            given, missing = ("--tls-cert", "--tls-key") if self.cert is not None else ("--tls-key", "--tls-cert")
            raise TlsConfigError(f"{given} was given without {missing}: a certificate and its key go together")
        if self.cert is not None and self.ca is None:
            raise TlsConfigError(
                "--tls-cert was given without --tls-ca: mutual TLS checks the other side against a CA; "
                "give the ca.pem that `hybrid certs init` made"
            )
        if self.plaintext and (self.cert is not None or self.ca is not None):
            raise TlsConfigError(
                "--plaintext was asked for together with TLS files: drop --plaintext to use TLS, or the files to not"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Whether this side speaks TLS (a client may have only a CA; a server needs all three files)."""
        return self.cert is not None or self.ca is not None

    @classmethod
    def resolve(
        cls,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        ca: str | Path | None = None,
        plaintext: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> TlsSettings:
        """Flags first, the environment where a flag was not given. ``--plaintext`` ignores the TLS variables."""
        env = os.environ if env is None else env

        def pick(flag, name):
            value = flag or (None if plaintext else env.get(name)) or None
            return Path(value).expanduser().absolute() if value else None

        chosen = dict(cert=pick(cert, ENV_CERT), key=pick(key, ENV_KEY), ca=pick(ca, ENV_CA))
        explicit_files = bool(cert or key or ca)
        if plaintext or (_env_true(env.get(ENV_PLAINTEXT)) and not explicit_files):
            return cls(plaintext=True, **({} if not explicit_files else chosen))
        return cls(**chosen)

    def check_bind(self, host: str, what: str = "gRPC") -> None:
        """Refuses a server without TLS on an address other than loopback, unless plaintext was asked for."""
        if self.cert is not None or self.plaintext or is_loopback(host):
            return
        raise TlsConfigError(
            f"refusing to serve {what} on {host or 'every interface'} without TLS: anyone who reaches it could use "
            f"it. To fix: {TLS_HINT}; or bind 127.0.0.1; or pass --plaintext ({ENV_PLAINTEXT}=1) to serve "
            "unencrypted on purpose"
        )

    def check_server_files(self) -> None:
        """Refuses server settings that cannot serve: a missing file, an unreadable one, a key that is not the
        certificate's, or a CA without the server's own pair."""
        if self.cert is None or self.key is None or self.ca is None:
            raise TlsConfigError(f"a TLS server needs a certificate, its key and the clients' CA: {TLS_HINT}")
        CredentialFiles(self.cert, self.key, self.ca).read()

    def server_credentials(self) -> RotatingServerCredentials:
        self.check_server_files()
        return RotatingServerCredentials(self)

    def client_credentials(self) -> ClientCredentials:
        return ClientCredentials(self)


@dataclass(frozen=True)
class Material:
    """The bytes of one consistent set of files."""

    cert: bytes | None
    key: bytes | None
    ca: bytes | None


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsConfigError(f"the TLS {what} {path} does not exist: {TLS_HINT}") from None
    except PermissionError:
        raise TlsConfigError(f"the TLS {what} {path} cannot be read by this user: fix its owner or mode") from None


def _check_pair(cert_path: Path, key_path: Path, cert: bytes, key: bytes) -> None:
    try:
        certificate = x509.load_pem_x509_certificate(cert)
    except ValueError as error:
        raise TlsConfigError(f"{cert_path} is not a PEM certificate ({error})") from None
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as error:
        raise TlsConfigError(f"{key_path} is not an unencrypted PEM private key ({error})") from None
    if private_key.public_key() != certificate.public_key():
        raise TlsConfigError(f"{key_path} is not the key of {cert_path}: give the pair that belongs together")


class CredentialFiles:
    """Certificate, key and CA files read together; ``changed`` says when any of them moved on."""

    def __init__(self, cert: Path | None, key: Path | None, ca: Path | None):
        self.cert, self.key, self.ca = cert, key, ca
        self.stamp = self._stamp()

    def _stamp(self) -> tuple:
        stamps = []
        for path in (self.cert, self.key, self.ca):
            try:
                stat = path.stat() if path is not None else None
                stamps.append(stat and (stat.st_mtime_ns, stat.st_size, stat.st_ino))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def changed(self) -> bool:
        """Whether the files differ from the last ``read`` or ``skip`` (a stat of each, no read)."""
        return self._stamp() != self.stamp

    def skip(self) -> None:
        """Takes the files as they are now as seen, without using them: the next change is looked at again."""
        self.stamp = self._stamp()

    def read(self) -> Material:
        """The files' bytes, checked: a PEM certificate and its own key. Raises TlsConfigError."""
        stamp = self._stamp()
        material = Material(_read(self.cert, "certificate"), _read(self.key, "key"), _read(self.ca, "CA"))
        if material.cert is not None and material.key is not None:
            _check_pair(self.cert, self.key, material.cert, material.key)
        self.stamp = stamp
        return material


class RotatingServerCredentials:
    """gRPC server credentials that require a client certificate of the CA, and take new files as they come.

    gRPC asks ``fetch`` before every handshake; it answers a new configuration only when the files changed and
    are consistent, so a rotation reaches new connections while the running ones go on."""

    def __init__(self, settings: TlsSettings):
        self.files = CredentialFiles(settings.cert, settings.key, settings.ca)
        self._lock = threading.Lock()
        self.rotations = 0
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self._configuration(self.files.read()), self.fetch, require_client_authentication=True
        )

    @staticmethod
    def _configuration(material: Material) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(material.key, material.cert)], root_certificates=material.ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            if not self.files.changed():
                return None
            try:
                material = self.files.read()
            except TlsConfigError as error:
                # Half-way through a rotation (the key not written yet): keep serving the old pair, retry on the
                # next change.
                self.files.skip()
                log.warning("TLS files changed but cannot be used yet (%s); serving the previous ones", error)
                return None
            self.rotations += 1
            log.info("TLS certificate files changed; new connections get %s", self.files.cert)
            return self._configuration(material)


class ClientCredentials:
    """Channel credentials from a client's files, and whether they changed since (to reopen channels on)."""

    def __init__(self, settings: TlsSettings):
        self.settings = settings
        self.files = CredentialFiles(settings.cert, settings.key, settings.ca)
        self._credentials = self._build()

    def _build(self) -> grpc.ChannelCredentials:
        material = self.files.read()
        return grpc.ssl_channel_credentials(
            root_certificates=material.ca, private_key=material.key, certificate_chain=material.cert
        )

    @property
    def credentials(self) -> grpc.ChannelCredentials:
        return self._credentials

    def changed(self) -> bool:
        """True once when the files moved on and the new ones are consistent; the credentials are then the new."""
        if not self.files.changed():
            return False
        try:
            self._credentials = self._build()
        except TlsConfigError as error:
            self.files.skip()
            log.warning("TLS client files changed but cannot be used yet (%s); keeping the previous ones", error)
            return False
        return True


@contextlib.contextmanager
def tls_environment(settings: TlsSettings | None) -> Iterator[None]:
    """``settings``' files as HYBRID_TLS_* in this process's environment for the block, for the processes it
    starts meanwhile (a local Ray cluster's, a load generator's), which keep them; nothing for None."""
    named = {} if settings is None else {ENV_CERT: settings.cert, ENV_KEY: settings.key, ENV_CA: settings.ca}
    given = {name: str(path) for name, path in named.items() if path is not None}
    before = {name: os.environ.get(name) for name in given}
    os.environ.update(given)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def secure_channel(target: str, settings: TlsSettings | None, options=(), aio: bool = True):
    """A channel to ``target``: TLS with the settings' files when they name any, else plaintext."""
    credentials = settings.client_credentials() if settings is not None and settings.enabled else None
    return open_channel(target, credentials, options, aio)


def open_channel(target: str, credentials: ClientCredentials | None, options=(), aio: bool = True):
    """A channel to ``target`` with ``credentials`` as they are now; plaintext only where there are none (settings
    that name no files: a server without them binds loopback only)."""
    module = grpc.aio if aio else grpc
    if credentials is None:
        return module.insecure_channel(target, options=list(options))
    return module.secure_channel(target, credentials.credentials, options=list(options))


class RotatingSSLContext:
    """An ``ssl.SSLContext`` for a TLS server (the HTTP front) that takes new files on the next handshake.

    Each handshake's server-name callback checks the files' stamps and hands the connection a context built
    on the new pair when they changed."""

    def __init__(self, cert: Path, key: Path):
        self.cert, self.key = cert, key
        self.files = CredentialFiles(cert, key, None)
        self._lock = threading.Lock()
        self._current = self._build()
        self.context = self._build()
        self.context.sni_callback = self._on_hello

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as error:
            raise TlsConfigError(
                f"the HTTP front cannot use {self.cert} with {self.key} ({error}): give --http-tls-cert and "
                "--http-tls-key, a PEM certificate and its own key"
            ) from None
        return context

    def _on_hello(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        with self._lock:
            if self.files.changed():
                self.files.skip()
                try:
                    self._current = self._build()
                    log.info("HTTP TLS files changed; new connections get %s", self.cert)
                except TlsConfigError as error:
                    log.warning("HTTP TLS files changed but cannot be used yet (%s); serving the previous ones", error)
            connection.context = self._current
