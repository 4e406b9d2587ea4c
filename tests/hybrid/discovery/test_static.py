from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from hybrid.discovery import ReplicaRecord, StaticFileRegistry
from tests.hybrid.discovery.samples import sample_record


def record(i: int, tier: str = "edge") -> ReplicaRecord:
    return sample_record(f"r{i}", port=5000 + i, tier=tier)


def test_register_list_deregister(tmp_path):
    registry = StaticFileRegistry(tmp_path / "d.yaml")
    registry.register(record(1))
    registry.register(record(2, "private"))
    registry.register(record(1))  # re-registering replaces, never duplicates
    assert [r.id for r in registry.list()] == ["r2", "r1"]
    assert registry.list()[1] == record(1)
    registry.deregister("r2")
    assert [r.id for r in registry.list()] == ["r1"]


def test_is_registered_compares_the_whole_record(tmp_path):
    registry = StaticFileRegistry(tmp_path / "d.yaml")
    assert not registry.is_registered(record(1))
    registry.register(record(1))
    assert registry.is_registered(record(1))
    assert not registry.is_registered(record(1).model_copy(update={"precision": "fp32"}))


def test_entries_use_the_consul_schema(tmp_path):
    service = record(3).to_service()
    assert service["Name"] == "hybrid-inference"
    assert service["Tags"] == ["tier:edge", "model:smollm2-135m", "precision:int8-b32"]
    assert service["Meta"] == {
        "region": "eu-west",
        "zone": "a",
        "capacity": "32",
        "cost_per_hour": "0.5",
        "grpc_port": "5003",
    }
    assert ReplicaRecord.from_service(service) == record(3)


def test_concurrent_registrations_are_all_kept(tmp_path):
    registry = StaticFileRegistry(tmp_path / "d.yaml")
    threads = [threading.Thread(target=registry.register, args=(record(i),)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.id for r in registry.list()) == sorted(f"r{i}" for i in range(12))


def test_unknown_tier_is_refused():
    with pytest.raises(ValidationError, match="tier must be edge, private or public"):
        record(1, tier="moon")

