"""A port the configuration names that another server holds: one line naming the flag to change, and nothing of
the server left running."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid.router.server import Router, RouterConfig
from hybrid.serving.ports import PortTakenError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def taken_port():
    """A port another server listens on for as long as the test runs."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder.getsockname()[1]


@pytest.fixture
def no_replicas(tmp_path):
    discovery = tmp_path / "discovery.yaml"
    discovery.write_text("replicas: []\n")
    return f"static:{discovery}"


@pytest.mark.parametrize("flag", ["--port", "--metrics-port", "--http-port"])
def test_a_taken_port_is_refused_in_one_line_that_names_its_flag(flag, taken_port, no_replicas):
    ports = {"--port": "0", flag: str(taken_port)}
    command = [sys.executable, "-m", "hybrid.cli", "router", "serve", "--discovery", no_replicas]
    command += [item for pair in ports.items() for item in pair]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"could not bind 127.0.0.1:{taken_port}: another server uses it; choose another {flag}" in result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr


async def test_a_router_that_cannot_start_stops_what_it_had_started(taken_port, no_replicas):
    router = Router(RouterConfig(port=0, metrics_port=taken_port, discovery=no_replicas))
    with pytest.raises(PortTakenError, match="choose another --metrics-port"):
        await router.start()
    # Its gRPC port, bound and serving before the metrics port failed, is free again.
    with socket.create_server(("127.0.0.1", router.shell.port)):
        pass
