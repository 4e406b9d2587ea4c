"""API keys: the key file, which stores only a digest of each key, and the store the router checks callers with.

A key is a random token made here (``new_key``) and shown once; the file keeps its SHA-256 digest, its name
(what logs, metrics and usage show, never the key), the priorities it may send (REALTIME is a privilege), its
limits (requests per second with a burst, tokens per minute, concurrent streams) and whether it is an admin
key. ``hybrid keys add|list|revoke`` edits the file; a running router reads it again when it changes.

A plain SHA-256 is enough here, unlike for passwords: a key carries 256 bits from ``secrets``, so there is
nothing for a slow or salted hash to protect against guessing, and checking a key stays a few microseconds
per request. The store finds an entry by its digest (a dict, so a thousand keys cost what one does) and
confirms it with ``hmac.compare_digest``; what the lookup's timing could tell is about the digest of the
guess, which a caller cannot steer toward a stored one without breaking SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

import grpc
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from hybrid.errors import HybridError
from hybrid.protocol import Priority

log = logging.getLogger("hybrid.security.keys")

# Every key starts so, to be recognised in a config or a leaked paste; the rest is 256 random bits.
KEY_PREFIX = "hyb_"
KEY_BYTES = 32
DEFAULT_PRIORITIES = ("interactive", "batch")
BEARER = "bearer"
# libyaml's safe loader and dumper where PyYAML has them: a file of many keys reads in a fraction of the time.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class UnauthenticatedError(HybridError):
    """No key, or a key that is not (or no longer) in the key file."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(HybridError):
    """A valid key asked for something it may not: a priority it lacks, or an admin call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class KeyLimits(BaseModel):
    """One key's limits; None is unlimited."""

    model_config = ConfigDict(extra="forbid")

    requests_per_s: float | None = Field(default=None, gt=0, description="Requests per second, on average.")
    burst: int | None = Field(
        default=None,
        ge=1,
        description="Requests the key may send at once before requests_per_s holds it back; "
        "default: one second's worth (at least 1).",
    )
    tokens_per_min: int | None = Field(
        default=None,
        ge=1,
        description="Prompt and completion tokens per minute; new requests are refused while the minute's are spent.",
    )
    streams: int | None = Field(default=None, ge=1, description="Requests the key may have in flight at once.")

    def burst_size(self) -> float:
        if self.burst is not None:
            return float(self.burst)
        return max(1.0, self.requests_per_s or 1.0)

    def describe(self) -> str:
        parts = []
        if self.requests_per_s is not None:
            parts.append(f"{self.requests_per_s:g} req/s (burst {self.burst_size():g})")
        if self.tokens_per_min is not None:
            parts.append(f"{self.tokens_per_min} tokens/min")
        if self.streams is not None:
            parts.append(f"{self.streams} streams")
        return ", ".join(parts) or "unlimited"


class KeyEntry(BaseModel):
    """One key as the file holds it: its digest, never the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Who the key belongs to, as logs, metrics and usage show it: letters, digits, '.', '_', '-'.",
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 digest of the key.")
    priorities: tuple[str, ...] = Field(
        default=DEFAULT_PRIORITIES, min_length=1, description="Priorities the key may send; realtime is a privilege."
    )
    limits: KeyLimits = Field(default_factory=KeyLimits, description="The key's limits.")
    admin: bool = Field(default=False, description="May call RouterAdmin and read every key's usage.")
    created: str = Field(default="", description="When the key was made, ISO 8601 UTC.")
    _allowed: frozenset[Priority] = PrivateAttr(default=frozenset())

    @field_validator("priorities")
    @classmethod
    def _known_priorities(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(Priority.parse(name).name.lower() for name in names))

    def model_post_init(self, context: object) -> None:
        # Asked on every request: a set of the enum's values, not names to compare as text.
        self._allowed = frozenset(Priority.parse(name) for name in self.priorities)

    def allows(self, priority: Priority) -> bool:
        return priority in self._allowed


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry] = Field(default_factory=list, description="Every key the router accepts.")

    @model_validator(mode="after")
    def _unique(self) -> KeyFile:
        for attribute in ("name", "sha256"):
            seen: set[str] = set()
            for entry in self.keys:
                value = getattr(entry, attribute)
                if value in seen:
                    shown = f"the name {value!r}" if attribute == "name" else f"the key named {entry.name!r}"
                    raise ValueError(f"{shown} appears twice: each key needs its own entry")
                seen.add(value)
        return self

    def find(self, name: str) -> KeyEntry | None:
        return next((entry for entry in self.keys if entry.name == name), None)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``authorization: Bearer <key>`` value; None when absent or of another scheme."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == BEARER and key else None


def load_key_file(path: str | Path) -> KeyFile:
    """The key file at ``path`` (YAML, of which JSON is a subset). Raises ValueError saying what to fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no key file at {path}: make one with `hybrid keys add NAME --keys {path}`") from None
    try:
        # JSON (which YAML includes) through its own parser: a file of thousands of keys reads many times faster.
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.load(text, Loader=_YAML_LOADER) or {}
        return KeyFile.model_validate(data)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise ValueError(f"the key file {path} is not valid YAML or JSON: {error}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'the file'}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise ValueError(f"the key file {path} is not valid: {problems}") from None


def save_key_file(path: str | Path, key_file: KeyFile) -> None:
    """Writes the file whole and atomically (a router reading it never sees half), readable by its owner only;
    as JSON where the name ends in .json, else as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key_file.model_dump(mode="json")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            if path.suffix == ".json":
                json.dump(data, out, indent=1)
            else:
                yaml.dump(data, out, Dumper=_YAML_DUMPER, sort_keys=False)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def add_key(
    path: str | Path,
    name: str,
    priorities: tuple[str, ...] = DEFAULT_PRIORITIES,
    limits: KeyLimits | None = None,
    admin: bool = False,
) -> str:
    """Makes a key, writes its digest to the file (made if missing) and returns the key: the only time it is seen."""
    key_file = load_key_file(path) if Path(path).exists() else KeyFile()
    if key_file.find(name) is not None:
        raise ValueError(f"a key named {name!r} already exists in {path}: revoke it first, or choose another name")
    key = new_key()
    try:
        entry = KeyEntry(
            name=name,
            sha256=key_digest(key),
            priorities=priorities,
            limits=limits or KeyLimits(),
            admin=admin,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
    except ValidationError as error:
        raise ValueError("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors(include_url=False))) from None
    save_key_file(path, KeyFile(keys=[*key_file.keys, entry]))
    return key


def revoke_key(path: str | Path, name: str) -> None:
    key_file = load_key_file(path)
    if key_file.find(name) is None:
        known = ", ".join(entry.name for entry in key_file.keys) or "none"
        raise ValueError(f"no key named {name!r} in {path} (its keys: {known})")
    save_key_file(path, KeyFile(keys=[entry for entry in key_file.keys if entry.name != name]))


class KeyStore:
    """The key file as the router checks it; ``refresh`` reads it again when it changed on disk.

    ``refresh`` is meant to run off the event loop (the router calls it every second on a thread): a file of
    many keys takes a while to read, and requests go on being checked against the keys read before until the
    new ones are ready. A file that turns invalid is reported and the last valid one kept: an edit half done
    must not lock every caller out, nor let a revoked key back in."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._use(load_key_file(self.path))

    def _use(self, key_file: KeyFile) -> None:
        # Swapped whole: a check on another thread sees the old keys or the new ones, never a mix.
        self._by_digest = {entry.sha256: entry for entry in key_file.keys}
        self.key_file = key_file

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def refresh(self) -> bool:
        """Reads the file again if it changed since it was last read; True when new keys are in use."""
        with self._lock:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                self._use(load_key_file(self.path))
            except (ValueError, OSError) as error:
                log.error("%s; still using the keys read before", error)
                return False
        log.info("key file %s read again: %d keys", self.path, len(self.key_file.keys))
        return True

    def identify(self, key: str) -> KeyEntry | None:
        """The entry of ``key``; None when no entry holds its digest."""
        digest = key_digest(key)
        entry = self._by_digest.get(digest)
        return entry if entry is not None and hmac.compare_digest(entry.sha256, digest) else None
