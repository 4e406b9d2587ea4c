"""A registration kept alive: discovery that loses a replica lists it again within an interval."""

from __future__ import annotations

import time

from hybrid.discovery import StaticFileRegistry
from hybrid.discovery.upkeep import RegistrationUpkeep
from tests.hybrid.discovery.samples import sample_record


def _listed(registry: StaticFileRegistry) -> list[str]:
    return [r.id for r in registry.list()]


def _eventually(check, within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(check())


def test_a_lost_registration_comes_back_and_stop_deregisters(tmp_path):
    path = tmp_path / "discovery.yaml"
    registry = StaticFileRegistry(path)
    other = sample_record("edge-1")
    registry.register(other)
    upkeep = RegistrationUpkeep(registry, lambda: sample_record("cloud-private"), interval_s=0.05)
    upkeep.start()
    assert sorted(_listed(registry)) == ["cloud-private", "edge-1"]
    path.unlink()  # discovery lost everything; the edge re-registers itself, and so must the cloud tier
    registry.register(other)
    assert _eventually(lambda: "cloud-private" in _listed(registry))
    upkeep.stop()
    assert _listed(registry) == ["edge-1"]


def test_discovery_down_at_start_is_survived_and_retried(tmp_path):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the registry wants a folder")
    registry = StaticFileRegistry(blocked / "discovery.yaml")
    upkeep = RegistrationUpkeep(registry, lambda: sample_record("cloud-private"), interval_s=0.05)
    upkeep.start()  # does not raise: serving matters more than being listed
    assert upkeep.failing
    blocked.unlink()
    blocked.mkdir()
    assert _eventually(lambda: not upkeep.failing and _listed(registry) == ["cloud-private"])
    upkeep.stop()
