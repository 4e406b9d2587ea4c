"""ReplicaDirectory on fake Serve target lists and a real static registry: no Ray, no model."""

from __future__ import annotations

from cloud.directory import ReplicaDirectory, ServeTarget
from hybrid.discovery import ReplicaRecord, StaticFileRegistry
from hybrid.discovery.records import prefer_direct_replicas
from tests.hybrid.discovery.samples import sample_record


def record(replica_id: str, port: int, application: str = "private", serve_replica: str = "") -> ReplicaRecord:
    return sample_record(replica_id, port, tier="private").model_copy(
        update={"application": application, "serve_replica": serve_replica}
    )


class FakeServe:
    """What Serve lists as each application's running replicas and their ports."""

    def __init__(self):
        self.apps: dict[str, dict[str, ServeTarget]] = {}

    def run(self, app: str, replica: str, port: int) -> None:
        self.apps.setdefault(app, {})[replica] = ServeTarget(replica, "10.0.0.7", port)

    def stop(self, app: str, replica: str) -> None:
        self.apps[app].pop(replica)

    def targets(self, app: str) -> dict[str, ServeTarget]:
        return dict(self.apps.get(app, {}))


def directory(registry, serve: FakeServe, replica: str, app: str = "private") -> ReplicaDirectory:
    def record_for(target: ServeTarget) -> ReplicaRecord:
        return record(f"cloud-{app}-{target.serve_replica}", target.port, app, target.serve_replica).model_copy(
            update={"address": target.ip}
        )

    return ReplicaDirectory(registry, app, replica, record_for, interval_s=60, targets=serve.targets)


def test_a_replica_registers_once_serve_lists_its_port(tmp_path):
    registry, serve = StaticFileRegistry(tmp_path / "d.yaml"), FakeServe()
    mine = directory(registry, serve, "a1")
    mine.tick()
    assert registry.list() == [], "registered before Serve gave the replica a port"
    serve.run("private", "a1", 40000)
    mine.tick()
    [listed] = registry.list()
    assert (listed.id, listed.address, listed.port, listed.serve_replica) == ("cloud-private-a1", "10.0.0.7", 40000, "a1")
    registry.deregister(listed.id)  # discovery lost it: the next tick registers it again
    mine.tick()
    assert [r.id for r in registry.list()] == ["cloud-private-a1"]
    mine.stop()
    assert registry.list() == [], "a stopped replica stayed in discovery"


def test_survivors_drop_the_records_of_replicas_serve_no_longer_runs(tmp_path):
    registry, serve = StaticFileRegistry(tmp_path / "d.yaml"), FakeServe()
    serve.run("private", "a1", 40000)
    serve.run("private", "a2", 40001)
    serve.run("public", "b1", 40002)
    first, second = directory(registry, serve, "a1"), directory(registry, serve, "a2")
    other_app = directory(registry, serve, "b1", app="public")
    for d in (first, second, other_app):
        d.tick()
    registry.register(record("cloud-private-proxy", 9000))  # the application's proxy record: not a replica
    serve.stop("private", "a2")  # killed outright: it never deregisters itself
    first.tick()
    assert sorted(r.id for r in registry.list()) == ["cloud-private-a1", "cloud-private-proxy", "cloud-public-b1"]


def test_an_empty_target_list_prunes_nothing(tmp_path):
    registry, serve = StaticFileRegistry(tmp_path / "d.yaml"), FakeServe()
    serve.run("private", "a1", 40000)
    mine = directory(registry, serve, "a1")
    mine.tick()
    serve.apps["private"] = {}  # Serve between states (a controller restart): not every replica gone
    mine.tick()
    assert [r.id for r in registry.list()] == ["cloud-private-a1"]


def test_the_router_prefers_an_applications_replicas_to_its_proxy():
    proxy = record("cloud-private-proxy", 9000)
    replicas = [record(f"cloud-private-{i}", 40000 + i, serve_replica=f"r{i}") for i in range(2)]
    edge = record("edge-1", 50061, application="")
    other_proxy = record("cloud-public-proxy", 9000, application="public")
    chosen = prefer_direct_replicas([proxy, *replicas, edge, other_proxy])
    assert [r.id for r in chosen] == ["cloud-private-0", "cloud-private-1", "edge-1", "cloud-public-proxy"]
    assert prefer_direct_replicas([proxy, edge]) == [proxy, edge], "without direct replicas the proxy stays"
