"""ConsulRegistry and ConsulWatcher against the in-process stub, or a real agent when CONSUL_HTTP_ADDR is set."""

from __future__ import annotations

import logging
import os
import time
import uuid

import pytest

from hybrid.discovery import ConsulRegistry, ConsulWatcher, ReplicaRecord
from hybrid.discovery.consul import ConsulConfigError, consul_client
from tests.hybrid.discovery.consul_stub import ConsulStub
from tests.hybrid.discovery.samples import sample_record

REAL_AGENT = os.environ.get("CONSUL_HTTP_ADDR")
stub_only = pytest.mark.skipif(
    bool(REAL_AGENT), reason="asserts on the stub's internals; unset CONSUL_HTTP_ADDR to run it against the stub"
)
FAST = {"wait": "1s", "backoff_min_s": 0.05, "backoff_max_s": 0.2}


def record(name: str, tier: str = "edge") -> ReplicaRecord:
    return sample_record(f"{name}-{uuid.uuid4().hex[:8]}", tier=tier)


def wait_for(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def stub():
    if REAL_AGENT:
        pytest.skip("stub-only: CONSUL_HTTP_ADDR points at a real agent")
    consul_stub = ConsulStub().start()
    yield consul_stub
    consul_stub.stop()


@pytest.fixture
def consul_addr(request, monkeypatch):
    if REAL_AGENT:
        yield REAL_AGENT
        return
    for name in ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_CACERT", "CONSUL_HTTP_SSL"):
        monkeypatch.delenv(name, raising=False)
    yield request.getfixturevalue("stub").address


@pytest.fixture
def registry(consul_addr):
    # TTL checks stay passing on a real agent for the test's length, with no gRPC server to probe.
    registry = ConsulRegistry(consul_addr, check="ttl")
    registered: list[str] = []
    original = registry.register

    def tracking_register(rec: ReplicaRecord) -> None:
        registered.append(rec.id)
        original(rec)

    registry.register = tracking_register
    yield registry
    for replica_id in registered:
        registry.deregister(replica_id)


def by_id(records: list[ReplicaRecord], replica_id: str) -> ReplicaRecord | None:
    return next((r for r in records if r.id == replica_id), None)


def test_register_list_deregister(registry):
    rec = record("edge")
    registry.register(rec)
    listed = by_id(registry.list(), rec.id)
    assert listed == rec
    assert listed.tags() == ["tier:edge", "model:smollm2-135m", "precision:int8-b32"]
    assert listed.meta()["grpc_port"] == "50061" and listed.port == 50061
    registry.deregister(rec.id)
    assert by_id(registry.list(), rec.id) is None
    registry.deregister(rec.id)  # unknown id: Consul answers 404, deregistering stays idempotent


def test_is_registered_asks_the_agent_for_the_whole_record(registry):
    rec = record("listed")
    assert not registry.is_registered(rec)
    registry.register(rec)
    assert registry.is_registered(rec)
    # A record that changed (after an artifact switch, say) must be registered again.
    assert not registry.is_registered(rec.model_copy(update={"precision": "fp32"}))


@stub_only
def test_registration_carries_the_grpc_check(stub, consul_addr):
    rec = record("grpc")
    ConsulRegistry(consul_addr).register(rec)
    body = stub.registrations[-1]
    assert body["name"] == "hybrid-inference" and body["id"] == rec.id and body["port"] == 50061
    assert body["tags"] == rec.tags() and body["meta"] == rec.meta()
    (check,) = body["checks"]
    assert check["grpc"] == "127.0.0.1:50061" and check["interval"] == "10s"
    assert check["DeregisterCriticalServiceAfter"] == "1m"
    assert stub.checks[f"service:{rec.id}"]["Type"] == "grpc"


@stub_only
def test_ttl_check_and_heartbeat(stub, consul_addr):
    registry = ConsulRegistry(consul_addr, check="ttl")
    rec = record("ttl")
    registry.register(rec)
    assert stub.registrations[-1]["checks"][0]["ttl"] == "30s"
    stub.set_check_status(rec.id, "critical")
    assert by_id(registry.list(), rec.id) is None
    registry.heartbeat(rec.id)
    assert by_id(registry.list(), rec.id) == rec


@stub_only
def test_passing_hides_a_critical_replica(stub, registry):
    healthy, failing = record("ok"), record("bad")
    registry.register(healthy)
    registry.register(failing)
    stub.set_check_status(failing.id, "critical")
    assert [r.id for r in registry.list()] == [healthy.id]


@stub_only
def test_empty_service_address_takes_the_node_address(stub, consul_addr):
    stub.node_address = "10.1.2.3"
    stub.register(
        {
            "Name": "hybrid-inference",
            "ID": "no-address",
            "Port": 50061,
            "Tags": ["tier:edge"],
            "Meta": {"capacity": "4"},
            "Check": {"TTL": "30s", "Status": "passing"},
        }
    )
    (listed,) = ConsulRegistry(consul_addr).list()
    assert listed.address == "10.1.2.3"


@stub_only
def test_watcher_follows_blocking_queries_without_spinning(stub, registry, consul_addr):
    changes: list[list[str]] = []
    watcher = ConsulWatcher(consul_addr, on_change=lambda rs: changes.append(sorted(r.id for r in rs)), **FAST)
    assert watcher.poll_once() and watcher.healthy and watcher.replicas == []
    watcher.start()
    try:
        rec = record("new")
        registry.register(rec)
        wait_for(lambda: [r.id for r in watcher.replicas] == [rec.id])
        assert changes[-1] == [rec.id]
        assert stub.blocking_queries_with_index(), "the change should arrive through a query carrying index"
        assert stub.blocking_queries_with_index()[-1]["near"] == "_agent"
        before = stub.blocking_queries
        time.sleep(1.2)  # nothing changes: one blocking query spans the 1 s wait
        assert stub.blocking_queries - before <= 3
        assert len(changes) == 1
    finally:
        watcher.stop()


@stub_only
def test_outage_keeps_the_last_view(stub, registry, consul_addr, caplog):
    first, second = record("first"), record("second")
    registry.register(first)
    watcher = ConsulWatcher(consul_addr, **FAST).start()
    try:
        wait_for(lambda: [r.id for r in watcher.replicas] == [first.id])
        with caplog.at_level(logging.WARNING, logger="hybrid.discovery.consul"):
            stub.stop()
            wait_for(lambda: not watcher.healthy)
            wait_for(lambda: watcher.consecutive_failures >= 3)
            staleness = watcher.staleness_s()
            time.sleep(0.2)
            assert watcher.staleness_s() > staleness
            assert [r.id for r in watcher.replicas] == [first.id]
            assert watcher.last_error
            outage_warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
            assert len(outage_warnings) == 1

            stub.restart()
            registry.register(second)
            wait_for(lambda: watcher.healthy and {r.id for r in watcher.replicas} == {first.id, second.id})
            assert watcher.last_error == "" and watcher.staleness_s() < 2
    finally:
        watcher.stop()


@stub_only
def test_index_going_backwards_resets_the_watch(stub, registry, consul_addr):
    watcher = ConsulWatcher(consul_addr, **FAST)
    registry.register(record("a"))
    assert watcher.poll_once()
    stub.stop()
    stub.restart(index=1)
    assert watcher.poll_once()  # answered at once: the stub's index (1) is below the watcher's
    assert watcher._index == 0
    assert watcher.poll_once()
    assert "index" not in stub.requests[-1][2], "after a reset the next query must not block"


@stub_only
def test_token_reaches_the_agent(stub, consul_addr, monkeypatch):
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    ConsulRegistry(consul_addr).list()
    ConsulWatcher(consul_addr, **FAST).poll_once()
    assert stub.tokens[-2:] == ["from-env", "from-env"]
    ConsulRegistry(consul_addr, token="explicit").list()
    assert stub.tokens[-1] == "explicit"


@pytest.mark.parametrize("bad", ["consul-without-port", "http://:8500", "ftp://host:8500", "host:notaport"])
def test_bad_address_says_what_to_set(monkeypatch, bad):
    monkeypatch.setenv("CONSUL_HTTP_ADDR", bad)
    with pytest.raises(ConsulConfigError, match="set CONSUL_HTTP_ADDR") as info:
        consul_client()
    assert bad in str(info.value)


def test_cacert_becomes_verify(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "https://consul.internal:8501")
    monkeypatch.setenv("CONSUL_CACERT", str(bundle))
    client = consul_client()
    assert client.http.verify == str(bundle) and client.http.base_uri == "https://consul.internal:8501"
    monkeypatch.setenv("CONSUL_CACERT", str(tmp_path / "missing.pem"))
    with pytest.raises(ConsulConfigError, match="CONSUL_CACERT"):
        consul_client()
