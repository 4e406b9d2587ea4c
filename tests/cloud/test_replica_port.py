"""A cloud replica's own port over real gRPC on loopback: its engine answers there, with mutual TLS when the node
gives certificates, and on loopback alone when it gives none. The engine is scripted: no Ray, no model."""

from __future__ import annotations

import grpc
import pytest

from cloud.replica_port import ReplicaPort
from hybrid.client import HybridClient, RequestFailed
from hybrid.security import certs
from hybrid.security.tls import TlsSettings
from hybrid.v1 import inference_pb2 as pb
from tests.hybrid.engine.fakes import ScriptedEngine

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def engine():
    engine = ScriptedEngine(scripts={"hello": "hi there"})
    engine.start()
    yield engine
    engine.stop()


def leaf(folder, name: str) -> TlsSettings:
    return TlsSettings(cert=folder / f"{name}.pem", key=folder / f"{name}.key", ca=folder / certs.CA_CERT_FILE)


def test_the_engine_answers_on_the_replicas_own_port_to_a_client_of_its_ca_only(engine, tmp_path):
    certs.init_ca_folder(tmp_path / "pki")
    certs.init_ca_folder(tmp_path / "stranger")
    port = ReplicaPort(engine, "cloud-private-test-1", 0, tls=leaf(tmp_path / "pki", "server"))
    address = f"127.0.0.1:{port.port}"
    try:
        assert port.tls and port.shell.address.startswith("0.0.0.0:"), "with a certificate, every interface"
        with HybridClient(address, tls=leaf(tmp_path / "pki", "client")) as client:
            assert client.complete(prompt="hello", max_new_tokens=8).text == "hi there"
            load = client.stub.GetLoad(pb.GetLoadRequest(), timeout=5)
            assert (load.replica_id, load.model, load.capacity) == ("cloud-private-test-1", "fake-model", 4)
        for outsider in (TlsSettings(plaintext=True), leaf(tmp_path / "stranger", "client")):
            with HybridClient(address, tls=outsider, timeout_s=3) as client, pytest.raises(RequestFailed) as refused:
                client.complete(prompt="hello", max_new_tokens=8)
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        port.stop(0)


def test_without_certificates_the_port_binds_loopback_and_refuses_bad_input_by_name(engine):
    port = ReplicaPort(engine, "cloud-private-test-2", 0, tls=TlsSettings())
    try:
        assert not port.tls and port.shell.address.startswith("127.0.0.1:")
        with HybridClient(f"127.0.0.1:{port.port}", tls=TlsSettings(plaintext=True)) as client:
            with pytest.raises(RequestFailed) as refused:
                client.complete(prompt="hello", max_new_tokens=8, temperature=-1.0)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and "temperature" in refused.value.details
    finally:
        port.stop(0)


def test_a_stream_interval_sends_the_same_answer_in_fewer_messages(engine):
    port = ReplicaPort(engine, "cloud-private-test-3", 0, tls=TlsSettings(), stream_interval_ms=50.0)
    try:
        with HybridClient(f"127.0.0.1:{port.port}", tls=TlsSettings(plaintext=True)) as client:
            request = pb.GenerateRequest(prompt="a longer prompt", max_new_tokens=40)
            messages = list(client.stub.Generate(request, timeout=10))
        # 40 tokens at a 2 ms step take ~80 ms: the first message, one or two 50 ms groups, the last.
        assert sum(len(m.token_ids) for m in messages) == 40 and len(messages) <= 4 and messages[-1].finish_reason
        assert "".join(m.text for m in messages) == engine.default_answer[:40]
    finally:
        port.stop(0)
