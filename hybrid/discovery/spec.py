"""The discovery spec: where a replica registers, or where the router finds replicas.

One string names it on every command line and config: ``static:FILE`` (the embedded default),
``consul`` (CONSUL_HTTP_ADDR or the local agent), ``consul:HOST:PORT`` or ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DISCOVERY_SPEC_HELP = "'static:FILE', 'consul' (CONSUL_HTTP_ADDR or the local agent), 'consul:HOST:PORT' or 'none'"


@dataclass(frozen=True)
class DiscoverySpec:
    """A parsed spec: ``path`` is set for static, ``address`` for Consul at an explicit address."""

    kind: Literal["static", "consul", "none"]
    path: Path | None = None
    address: str | None = None

    def __str__(self) -> str:
        if self.kind == "static":
            return f"static:{self.path}"
        if self.kind == "consul" and self.address:
            return f"consul:{self.address}"
        return self.kind


def parse_discovery_spec(text: str) -> DiscoverySpec:
    """Raises ValueError naming the accepted forms."""
    kind, separator, rest = text.partition(":")
    if kind == "none" and not separator:
        return DiscoverySpec("none")
    if kind == "consul":
        if not separator:
            return DiscoverySpec("consul")
        if rest:
            return DiscoverySpec("consul", address=rest)
    if kind == "static" and rest:
        return DiscoverySpec("static", path=Path(rest))
    raise ValueError(f"discovery {text!r} is unknown: use {DISCOVERY_SPEC_HELP}")
