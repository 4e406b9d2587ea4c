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
