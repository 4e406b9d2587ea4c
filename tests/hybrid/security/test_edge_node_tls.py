"""The edge node's own probes (`hybrid-edge status`, the router probe) speak mutual TLS with the node's files."""

from __future__ import annotations

import pytest

from edge_agent.node.agent import RouterProbe
from edge_agent.node.status import probe_agent
from hybrid.security.tls import TlsSettings


def test_status_probes_a_tls_agent_with_the_node_certificate(serve, pki):
    agent = serve(pki.server)
    live = probe_agent(agent.address, pki.server)  # a node's server leaf is a client certificate too
    assert live["health"] == "SERVING"
    refused = probe_agent(agent.address, TlsSettings())
    assert refused["health"] == "UNREACHABLE" and "UNAVAILABLE" in refused["error"]


@pytest.mark.parametrize("with_tls, reachable", [(True, True), (False, False)])
async def test_the_router_probe_presents_the_node_certificate(serve, pki, with_tls, reachable):
    import asyncio

    router = await asyncio.to_thread(serve, pki.server)
    probe = RouterProbe(router.address, pki.server if with_tls else None)
    await probe.check()
    assert probe.reachable is reachable


def test_edge_settings_on_every_interface_need_tls_or_plaintext_asked_for(pki):
    from edge_agent.config import EdgeAgentSettings
    from hybrid.security.tls import TlsConfigError

    with pytest.raises(TlsConfigError, match="--plaintext"):
        EdgeAgentSettings(host="0.0.0.0")
    assert EdgeAgentSettings(host="0.0.0.0", tls=TlsSettings(plaintext=True)).tls.plaintext
    settings = EdgeAgentSettings(host="0.0.0.0", tls=pki.server)
    # As agent.yaml keeps them, and reads them back.
    assert EdgeAgentSettings.model_validate(settings.model_dump(mode="json")).tls == pki.server


def test_hybrid_edge_install_refuses_every_interface_without_tls_before_touching_anything(tmp_path, capsys):
    from edge_agent.node.cli import main

    prefix = tmp_path / "prefix"
    argv = ["install", "--artifact", str(tmp_path), "--sha256", "0" * 64, "--prefix", str(prefix), "--host", "0.0.0.0"]
    assert main([*argv, "--config-dir", str(tmp_path / "etc"), "--no-systemd", "--no-start"]) != 0
    assert "--tls-cert" in capsys.readouterr().err and not prefix.exists()
