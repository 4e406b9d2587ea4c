"""Free ports on this machine, for servers that must be told a port before they bind it."""

from __future__ import annotations

import socket

from hybrid import constants


def free_port(host: str = constants.DEFAULT_HOST) -> int:
    """A port nothing listens on now. Another process may take it before the caller binds it: for servers that
    cannot bind port 0 themselves (Ray's proxy, which reuses ports and would not fail loudly; several processes
    that share one port)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
