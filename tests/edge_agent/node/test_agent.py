"""The node agent in this process: a switch asked for by hand (`systemctl reload`), and a stop in the middle of
its probation, which must leave the node on the artifact that served before."""

from __future__ import annotations

import asyncio
import time

import pytest

from edge_agent.artifacts.manifest import MANIFEST_NAME, manifest_sha256, read_manifest, write_manifest
from edge_agent.artifacts.store import ArtifactStore, Links
from edge_agent.node.agent import NodeAgent
from edge_agent.node.config import NodeConfig, StateFile, UpdateSettings
from hybrid.client import HybridClient
from hybrid.serving.background import BackgroundLoop
from tests.edge_agent.helpers import linked_copy, wait_for

pytestmark = pytest.mark.slow


class BackgroundNodeAgent(BackgroundLoop):
    def __init__(self, node: NodeConfig):
        super().__init__("node-agent-loop")
        self.agent: NodeAgent = self.start_server(NodeAgent, node)

    def hang_up(self) -> None:
        """What SIGHUP does (a signal handler needs the main thread)."""
        self._loop.call_soon_threadsafe(self.agent._on_hangup)

    def stop(self) -> None:
        self.call(self.agent.stop())
        self.close()


def rebuilt(source, out) -> str:
    """The same model as a new build: another manifest, so another hash."""
    linked_copy(source, out)
    manifest = read_manifest(out)
    (out / MANIFEST_NAME).unlink()  # a hard link to the source's: replace it, never write through it
    write_manifest(out, manifest.model_copy(update={"created_by": "a later build"}))
    return manifest_sha256(out)


@pytest.fixture
def node(int8_artifact, tmp_path):
    config = NodeConfig(
        prefix=tmp_path / "prefix", region="test-region", port=0, discovery="none", metrics_port=None,
        update=UpdateSettings(probation_s=300),
    )  # fmt: skip
    store = ArtifactStore(config.layout.artifacts)
    first = manifest_sha256(int8_artifact)
    store.add(str(int8_artifact), first)
    store.flip(first)
    second = rebuilt(int8_artifact, tmp_path / "second")
    store.add(str(tmp_path / "second"), second)
    return config, store, first, second


def test_stop_during_probation_returns_to_the_artifact_that_served_before(node):
    config, store, first, second = node
    state = StateFile(config.layout.state_file)
    running = BackgroundNodeAgent(config)
    try:
        edge = running.agent.agent
        assert edge.serving.sha256 == first
        # A slow discovery: the switch's registration sync takes a second after requests have moved.
        moved_at: list[float] = []

        async def slow_sync_registration() -> None:
            if edge.serving.sha256 == second and not moved_at:
                moved_at.append(time.time())
                await asyncio.sleep(1.0)

        edge.sync_registration = slow_sync_registration
        store.flip(second)  # an operator flips `current` by hand, then `systemctl reload hybrid-edge`
        running.hang_up()
        wait_for(lambda: state.read().last is not None and state.read().last.outcome == "probation", 120, "probation")
        last = state.read().last
        assert (last.source, last.from_sha256, last.to_sha256) == ("SIGHUP", first, second)
        # The record tells when new requests began to go to the new artifact, not when discovery heard of it.
        assert moved_at and last.switched_at <= moved_at[0], (last.switched_at, moved_at)
        assert running.agent.agent.serving.sha256 == second
        with HybridClient(running.agent.address) as client:
            assert client.complete(prompt="Hello", max_new_tokens=2).token_ids
    finally:
        running.stop()
    last = state.read().last
    assert last.outcome == "interrupted" and "run the update again" in last.reason
    assert store.links() == Links(current=first)
    again = BackgroundNodeAgent(config)
    try:
        assert again.agent.agent.serving.sha256 == first
    finally:
        again.stop()
