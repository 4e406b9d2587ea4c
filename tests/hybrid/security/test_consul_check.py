"""Consul's gRPC health check of a replica that serves TLS speaks TLS and verifies it."""

from __future__ import annotations

import pytest

pytest.importorskip("consul")

from hybrid.discovery import registry_from_spec  # noqa: E402
from tests.hybrid.discovery.samples import sample_record  # noqa: E402


def test_the_check_of_a_tls_replica_uses_tls_and_verifies_it():
    registry = registry_from_spec("consul:127.0.0.1:8500", tls=True)
    check = registry.health_check(sample_record("edge-1"))
    assert check["GRPCUseTLS"] is True and check["TLSSkipVerify"] is False
    assert check["grpc"].endswith(f":{sample_record('edge-1').port}")


def test_the_check_of_a_plaintext_replica_stays_plaintext():
    check = registry_from_spec("consul:127.0.0.1:8500").health_check(sample_record("edge-1"))
    assert "GRPCUseTLS" not in check and "TLSSkipVerify" not in check
