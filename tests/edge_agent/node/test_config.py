"""agent.yaml, the update history and the node's locks, without a model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edge_agent import defaults
from edge_agent.node.config import (
    AgentRuntime,
    EdgeNodeError,
    NodeConfig,
    StateFile,
    UpdateRecord,
    read_node_config,
    render_node_config,
    running_agent,
    write_runtime,
)
from tests.edge_agent.artifacts.samples import sample_artifact


def test_config_round_trips_and_feeds_the_agent(tmp_path):
    node = NodeConfig(prefix=tmp_path, region="eu-central", router="router.internal:50051", port=50070)
    path = tmp_path / "agent.yaml"
    path.write_text(render_node_config(node))
    assert read_node_config(path) == node
    artifact = tmp_path / "artifact"
    sample_artifact(artifact)
    agent = node.agent_config(artifact)
    assert (agent.artifact, agent.region, agent.port, agent.discovery) == (
        artifact,
        "eu-central",
        50070,
        node.discovery,
    )


def test_config_errors_say_what_to_do(tmp_path):
    with pytest.raises(EdgeNodeError, match="install the node with `hybrid-edge install` first"):
        read_node_config(tmp_path / "missing.yaml")
    typo = tmp_path / "agent.yaml"
    typo.write_text("regoin: eu-central\n")
    with pytest.raises(EdgeNodeError, match=r"is not a valid agent config \(regoin: Extra inputs are not permitted\)"):
        read_node_config(typo)
    with pytest.raises(ValueError, match="router must be HOST:PORT"):
        NodeConfig(router="http://router:50051")


def test_history_keeps_the_last_updates(tmp_path):
    state = StateFile(tmp_path / "state.json")
    for number in range(defaults.EDGE_UPDATE_HISTORY + 5):
        state.save(UpdateRecord(source=f"u{number}", to_sha256="ab" * 32, outcome="checking"))
    updates = state.read().updates
    assert (
        len(updates) == defaults.EDGE_UPDATE_HISTORY and updates[-1].source == f"u{defaults.EDGE_UPDATE_HISTORY + 4}"
    )
    finished = state.finish(updates[-1], "refused", "because")
    assert state.read().last == finished and finished.finished and finished.finished_at


def test_a_second_update_is_refused_while_one_runs(tmp_path):
    layout = NodeConfig(prefix=tmp_path).layout
    with layout.update_lock():
        other = subprocess.run(
            [sys.executable, "-c", "import sys; from pathlib import Path; from edge_agent.node.config import NodeLayout\n"
             "with NodeLayout(Path(sys.argv[1])).update_lock(): pass", str(tmp_path)],
            capture_output=True, text=True,
        )  # fmt: skip
    assert other.returncode != 0 and f"already running on this node (pid {os.getpid()})" in other.stderr
    with layout.update_lock():  # free again
        pass


def test_a_dead_agent_is_not_running(tmp_path):
    layout = NodeConfig(prefix=tmp_path).layout
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    report = dict(address="127.0.0.1:1", replica_id="r", started_at=0, serving_sha256="ab" * 32)
    write_runtime(layout, AgentRuntime(pid=int(finished.stdout), serving_precision="int8-b32", model="m", **report))
    assert running_agent(layout) is None
    # A live process that is not an agent (the pid was reused) does not count either.
    write_runtime(layout, AgentRuntime(pid=os.getpid(), serving_precision="int8-b32", model="m", **report))
    assert running_agent(layout) is None
