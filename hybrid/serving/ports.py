"""Ports: a free one for servers that must be told a port before they bind it, the error for one taken, and the
/metrics server that says so."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, start_http_server

from hybrid import constants


class PortTakenError(OSError):
    """A port the configuration names is in use by another server; the message names the setting to change."""


@contextmanager
def binding(host: str, port: int, setting: str) -> Iterator[None]:
    """Turns "address already in use" from the bind inside into a ``PortTakenError`` that names ``setting``."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        raise PortTakenError(
            f"could not bind {host}:{port}: another server uses it; choose another {setting}"
        ) from None


def free_port(host: str = constants.DEFAULT_HOST) -> int:
    """A port nothing listens on now. Another process may take it before the caller binds it: for servers that
    cannot bind port 0 themselves (Ray's proxy, which reuses ports and would not fail loudly; several processes
    that share one port)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def start_metrics_server(port: int, host: str, registry: CollectorRegistry):
    """prometheus_client's /metrics server for ``registry`` on ``host:port``; a port taken names --metrics-port."""
    with binding(host, port, "--metrics-port"):
        server, _ = start_http_server(port, host, registry=registry)
    return server
