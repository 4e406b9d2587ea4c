"""The seam between the core and its tiers.

The core imports no tier. Each tier package registers a plugin under the entry-point group
``hybrid.tiers`` (pyproject.toml), and the core reaches the tier only through it:

* ``hybrid`` adds every plugin's subcommands (``hybrid edge serve``, ``hybrid cloud serve`` ...);
* ``hybrid up`` asks each tier it needs to ``start_local`` on this machine;
* ``hybrid bench overload`` asks each tier it needs to ``start_bench`` its replicas.

A tier whose pip extra is missing still lists its subcommands; running one says what to install.
The plugin module itself must import without the extra: it imports the tier's code when called.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from hybrid.errors import HybridError
from hybrid.security.tls import TlsSettings

if TYPE_CHECKING:
    from hybrid.bench.overload_config import OverloadConfig
    from hybrid.bench.processes import ServerProcess
    from hybrid.discovery import ReplicaRecord

log = logging.getLogger("hybrid.tiers")

ENTRY_POINT_GROUP = "hybrid.tiers"
DISTRIBUTION = "hybrid-inference"

Command = Callable[[argparse.Namespace], int]


class TierNotInstalledError(HybridError):
    """A command needs a tier (or an extra) whose dependencies are not installed; the message says what to run."""

    code = grpc.StatusCode.FAILED_PRECONDITION


def not_installed(what: str, extra: str, alternative: str = "") -> TierNotInstalledError:
    hint = f"{what} is not installed: pip install '{DISTRIBUTION}[{extra}]'"
    return TierNotInstalledError(f"{hint}, or {alternative}" if alternative else hint)


def modules_installed(*modules: str) -> bool:
    """Whether every module can be imported, found without importing any (so the check stays instant)."""
    return all(importlib.util.find_spec(module) is not None for module in modules)


@dataclass(frozen=True)
class LocalStack:
    """What `hybrid up` tells a tier it starts on this machine."""

    state_dir: Path  # the stack's own folder: artifacts, the static discovery file
    host: str
    region: str
    discovery: str
    port: int  # the tier's own port; 0 picks a free one
    console: Any  # a rich Console on stderr: progress while starting, one line per server once up
    tls: TlsSettings = TlsSettings()  # what the tier's servers serve with: mutual TLS unless `hybrid up --plaintext`


class BenchHost(Protocol):
    """What `hybrid bench overload` lends a tier while it starts its replicas."""

    @property
    def config(self) -> OverloadConfig: ...

    def say(self, message: str) -> None: ...

    def in_process(
        self, server_class: type, server_config: Any, name: str, cpus: frozenset[int] | None = None
    ) -> ServerProcess:
        """Runs ``server_class(server_config)`` in a process of its own until the bench stops; on ``cpus`` only,
        where given."""
        ...

    def on_stop(self, stopper: Callable[[], None]) -> None:
        """Calls ``stopper`` when the bench tears down, last registered first."""
        ...

    def provisioned(self, tier: str, replicas: int, cost_per_hour: float | None = None) -> None:
        """Counts ``replicas`` of ``tier`` ('edge', 'private' or 'public') in the run's cost, each at
        ``cost_per_hour`` (default: the configured price of one replica of the tier)."""
        ...


class TierPlugin(Protocol):
    """One tier, as the core sees it."""

    name: str  # the entry point's name and the tier's command group: "edge", "cloud"
    extra: str  # the pip extra that installs the tier's dependencies
    # Replica tiers whose servers cannot speak TLS (Ray Serve's gRPC); `hybrid up` has the router reach them plain.
    plaintext_tiers: tuple[str, ...]

    def available(self) -> bool:
        """Whether the extra's modules are installed (found, not imported)."""
        ...

    def add_commands(self, commands: argparse._SubParsersAction) -> None:
        """Adds the tier's subcommands to `hybrid`, each guarded by ``requiring`` where it needs the extra."""
        ...

    def start_local(self, stack: LocalStack) -> Callable[[], None]:
        """Starts the tier for `hybrid up` and returns what stops it; cleans up itself when it fails."""
        ...

    def start_bench(self, bench: BenchHost) -> list[ReplicaRecord]:
        """Starts the tier's replicas for the overload bench; returns them as discovery would list them.

        A Serve application may list its proxy's record beside its replicas' own: the baseline takes
        records without ``serve_replica``, the router prefers the replicas (``prefer_direct_replicas``)."""
        ...


@functools.cache
def plugins() -> dict[str, TierPlugin]:
    """Every registered tier by name. One that fails to load is left out with a warning, so that a
    broken tier never takes the core's commands down with it."""
    found: dict[str, TierPlugin] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in found:  # an editable install can list its entry points twice
            continue
        try:
            found[entry_point.name] = entry_point.load()
        except Exception as error:
            log.warning("tier %s (%s) did not load: %s", entry_point.name, entry_point.value, error)
    return found


def require(name: str, alternative: str = "") -> TierPlugin:
    """The named tier, installed; else ``TierNotInstalledError`` saying what to install (or ``alternative``)."""
    plugin = plugins().get(name)
    if plugin is None:
        raise not_installed(f"the {name} tier", name, alternative)
    return installed(plugin, alternative)


def installed(plugin: TierPlugin, alternative: str = "") -> TierPlugin:
    if not plugin.available():
        raise not_installed(f"the {plugin.name} tier", plugin.extra, alternative)
    return plugin


def requiring(plugin: TierPlugin, command: Command) -> Command:
    """``command``, run only when the plugin's tier is installed."""

    @functools.wraps(command)
    def guarded(args: argparse.Namespace) -> int:
        installed(plugin)
        return command(args)

    return guarded
