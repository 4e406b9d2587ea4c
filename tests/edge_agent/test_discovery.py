"""The edge agent registers in Consul (the stub, or a real agent when CONSUL_HTTP_ADDR is set)."""

from __future__ import annotations

import os
import uuid

import pytest

from hybrid.client import HybridClient
from hybrid.discovery import ConsulRegistry
from tests.conftest import start_agent
from tests.edge_agent.helpers import TcpProxy, wait_for
from tests.hybrid.discovery.consul_stub import ConsulStub

REAL_AGENT = os.environ.get("CONSUL_HTTP_ADDR")


@pytest.fixture
def consul_address():
    if REAL_AGENT:
        yield REAL_AGENT
        return
    stub = ConsulStub().start()
    yield stub.address
    stub.stop()


def test_agent_registers_in_consul_and_deregisters_on_stop(int8_artifact, tmp_path, consul_address):
    agent = start_agent(int8_artifact, tmp_path, discovery=f"consul:{consul_address}", replica_id="edge-consul-test")
    registry = ConsulRegistry(consul_address)
    try:
        listed = {r.id: r for r in registry.list()}
        assert "edge-consul-test" in listed
        record = listed["edge-consul-test"]
        assert (record.tier, record.precision, record.region) == ("edge", "int8-b32", "test-region")
        assert f"{record.address}:{record.port}" == agent.address
        with HybridClient(agent.address) as client:
            assert client.complete(prompt="Hello", max_new_tokens=2).finish_reason in ("STOP", "LENGTH")
    finally:
        agent.stop()
    assert "edge-consul-test" not in {r.id for r in registry.list()}


def test_agent_serves_while_consul_is_unreachable(int8_artifact, tmp_path, caplog):
    # Nothing listens on port 1: registration fails, the agent still starts and answers.
    agent = start_agent(int8_artifact, tmp_path, discovery="consul:127.0.0.1:1")
    try:
        with HybridClient(agent.address) as client:
            assert client.complete(prompt="Hello", max_new_tokens=2).token_ids
    finally:
        agent.stop()
    assert any("could not register" in r.getMessage() for r in caplog.records)


def test_unknown_discovery_spec_says_what_to_use(int8_artifact):
    from pydantic import ValidationError

    from edge_agent.config import EdgeAgentConfig

    with pytest.raises(ValidationError, match="use 'static:FILE', 'consul'"):
        EdgeAgentConfig(artifact=int8_artifact, discovery="etcd:somewhere")


def test_agent_serves_through_a_discovery_outage_and_registers_again(int8_artifact, tmp_path, consul_address, caplog):
    # The agent reaches Consul through a link the test can cut, like a regional node losing its WAN.
    link = TcpProxy(consul_address)
    replica_id = f"edge-outage-{uuid.uuid4().hex[:8]}"
    agent = start_agent(
        int8_artifact, tmp_path, discovery=f"consul:{link.address}", replica_id=replica_id, reregister_interval_s=0.2
    )
    registry = ConsulRegistry(consul_address)
    listed = lambda: replica_id in {r.id for r in registry.list()}  # noqa: E731
    try:
        assert listed()
        link.cut()
        # Meanwhile Consul drops it, as deregister_critical_service_after does with an unreachable node.
        registry.deregister(replica_id)
        wait_for(lambda: agent.agent.discovery.failing_since is not None, what="the outage noticed")
        with HybridClient(agent.address) as client:
            for _ in range(3):
                assert client.complete(prompt="Hello", max_new_tokens=2).token_ids
        assert not listed()
        link.restore()
        wait_for(listed, timeout_s=15, what="registered again")
        assert agent.agent.discovery.registered and agent.agent.discovery.failing_since is None
    finally:
        agent.stop()
        link.cut()
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not register" in m and "serving anyway" in m for m in messages)
    assert any("reachable again" in m for m in messages)
    assert not listed()  # and deregistered on stop
