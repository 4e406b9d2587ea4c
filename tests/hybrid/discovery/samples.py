"""Replica records shared by the discovery tests."""

from __future__ import annotations

from hybrid.discovery import ReplicaRecord


def sample_record(replica_id: str, port: int = 50061, tier: str = "edge") -> ReplicaRecord:
    return ReplicaRecord(
        id=replica_id,
        address="127.0.0.1",
        port=port,
        tier=tier,
        model="smollm2-135m",
        precision="int8-b32",
        region="eu-west",
        zone="a",
        capacity=32,
        cost_per_hour=0.5,
    )
