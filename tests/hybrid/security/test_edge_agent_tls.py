"""The router routes to a real edge agent (the int8 artifact on ONNX Runtime) over mutual TLS on loopback."""

from __future__ import annotations

import grpc
import pytest

from edge_agent.config import EdgeAgentConfig
from edge_agent.server import BackgroundEdgeAgent
from hybrid.client import HybridClient, RequestFailed
from hybrid.router.server import BackgroundRouter, RouterConfig
from hybrid.security.tls import TlsSettings
from hybrid.v1 import inference_pb2 as pb


def test_the_router_routes_to_an_edge_agent_over_mtls(int8_artifact, pki, stranger_pki, tmp_path):
    discovery = f"static:{tmp_path / 'discovery.yaml'}"
    edge = BackgroundEdgeAgent(
        EdgeAgentConfig(artifact=int8_artifact, port=0, discovery=discovery, max_batch_size=4, tls=pki.server)
    )
    router = None
    try:
        router = BackgroundRouter(RouterConfig(port=0, discovery=discovery, poll_interval_s=0.2, tls=pki.server))
        with HybridClient(router.address, timeout_s=120, tls=pki.client) as client:
            answer = client.complete(prompt="The capital of France is", max_new_tokens=4, priority="realtime")
        assert answer.served_by.tier == pb.EDGE and len(answer.token_ids) >= 1
        # The agent itself answers only callers with a certificate of its CA.
        for caller in (TlsSettings(), stranger_pki.client):
            with HybridClient(edge.address, timeout_s=2, tls=caller) as client, pytest.raises(RequestFailed) as no:
                client.complete(prompt="Hi", max_new_tokens=1)
            assert no.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        if router is not None:
            router.stop()
        edge.stop()
