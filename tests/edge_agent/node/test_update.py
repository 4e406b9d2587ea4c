"""`hybrid-edge update` against an installed agent in its own process: the health gate refuses what is slow
or broken, a good artifact is switched to with requests in flight and none fails, a fault in the probation
rolls back, and a restart falls back to the last good artifact when the current one is damaged.

The tests run in order on one node: int8 serves first, fp32 after the good update."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.artifacts.store import ArtifactStore, Links
from edge_agent.node.config import NodeLayout, StateFile, running_agent
from hybrid.client import HybridClient, RequestFailed
from tests.edge_agent.helpers import LONG_PROMPT, AgentProcess, hybrid_edge, tamper, wait_for

pytestmark = pytest.mark.slow


@dataclass
class Node:
    root: Path
    int8: tuple[str, str]  # (url, sha)
    agent: AgentProcess | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.root / "etc" / "agent.yaml"

    @property
    def hybrid_edge(self) -> Path:
        return self.root / "prefix" / "venv" / "bin" / "hybrid-edge"

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root / "prefix" / "artifacts")

    @property
    def state(self) -> StateFile:
        return StateFile(self.root / "prefix" / "state.json")

    def start(self) -> AgentProcess:
        self.agent = AgentProcess(self.hybrid_edge, self.config)
        return self.agent

    def stop(self) -> None:
        if self.agent is not None:
            status = self.agent.stop()
            self.logs.append(self.agent.output)
            self.agent = None
            assert status == 0, self.logs[-1]

    def update(self, url: str, sha: str, *flags: str) -> subprocess.Popen:
        """The installed `hybrid-edge update`, as the operator runs it on the node."""
        return subprocess.Popen(
            [str(self.hybrid_edge), "update", "--config", str(self.config), "--artifact", url, "--sha256", sha, *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def serving(self) -> str:
        """What the running agent says it serves."""
        runtime = running_agent(NodeLayout(self.root / "prefix"))
        return runtime.serving_sha256 if runtime else ""

    def answer(self, prompt: str = "Name a colour.", **params):
        with HybridClient(self.agent.address) as client:
            return client.complete(messages=[{"role": "user", "content": prompt}], max_new_tokens=8, **params)


def finish(process: subprocess.Popen, timeout_s: float = 600) -> tuple[int, dict, str]:
    """Exit status, the update's record (the last stdout line) and stderr."""
    stdout, stderr = process.communicate(timeout=timeout_s)
    record = json.loads(stdout.splitlines()[-1]) if stdout.strip() else {}
    return process.returncode, record, stderr


@pytest.fixture(scope="module")
def node(edge_wheel, int8_artifact, artifact_shelf, tmp_path_factory):
    root = tmp_path_factory.mktemp("updated-node")
    url, sha = artifact_shelf.put(int8_artifact, "int8")
    installed = hybrid_edge(
        "install", "--artifact", url, "--sha256", sha, "--region", "test-region",
        "--discovery", "none", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "none",
        "--prefix", str(root / "prefix"), "--config-dir", str(root / "etc"),
        "--wheel", str(edge_wheel), "--reuse-site-packages", "--no-systemd",
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    node = Node(root, (url, sha))
    node.start()
    yield node
    node.stop()


def test_gate_refuses_an_artifact_slower_than_the_bound(node, probation_failing_artifact):
    # This candidate answers the short canary well; a bound no artifact can meet leaves only speed to judge.
    url, sha = probation_failing_artifact
    code, record, stderr = finish(node.update(url, sha, "--min-speed-ratio", "1000"))
    assert code == 1, stderr
    assert record["outcome"] == "refused"
    assert "health gate: the candidate decodes" in record["reason"] and "the gate asks for at least" in record["reason"]
    gate = record["gate"]
    assert gate["candidate_tokens_per_s"] > 0 and gate["current_tokens_per_s"] > 0 and gate["speed_ratio"] < 1000
    assert node.store.links() == Links(current=node.int8[1])
    assert sha not in node.store.stored()  # a refused candidate does not stay on the node
    assert node.answer().served_by.precision == "int8-b32"


def test_canary_failure_is_refused_and_the_agent_keeps_serving(node, canary_failing_artifact):
    url, sha = canary_failing_artifact
    code, record, stderr = finish(node.update(url, sha))
    assert code == 1, stderr
    assert record["outcome"] == "refused" and record["to_sha256"] == sha
    assert "health gate: the candidate failed its canary" in record["reason"] and "Reshape" in record["reason"]
    assert node.store.links() == Links(current=node.int8[1]) and sha not in node.store.stored()
    assert node.serving() == node.int8[1]
    assert node.answer().served_by.precision == "int8-b32"


def test_good_update_switches_with_requests_in_flight_and_none_fails(node, fp32_artifact, artifact_shelf):
    url, sha = artifact_shelf.put(fp32_artifact, "fp32")
    results: list[tuple[float, float, str]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with HybridClient(node.agent.address, timeout_s=120) as client:
            while not stop.is_set():
                started = time.time()
                try:
                    answer = client.complete(
                        messages=[{"role": "user", "content": "Tell me about the sea."}], max_new_tokens=32
                    )
                except BaseException as error:  # every one of them must succeed
                    failures.append(error)
                    return
                results.append((started, time.time(), answer.served_by.precision))

    askers = [threading.Thread(target=keep_asking) for _ in range(2)]
    for asker in askers:
        asker.start()
    try:
        # No speed bound: this test is about the switch, not about fp32's speed on a busy machine.
        code, record, stderr = finish(node.update(url, sha, "--probation-s", "3", "--min-speed-ratio", "0"))
        assert code == 0, stderr
        wait_for(lambda: any(p == "fp32" and s > record.get("switched_at", 0) for s, _, p in results), what="fp32")
    finally:
        stop.set()
        for asker in askers:
            asker.join(120)
    assert not failures, failures
    assert record["outcome"] == "switched" and "probation without a failure" in record["reason"]
    switched_at = record["switched_at"]
    # Answers that were running on int8 when the switch happened finished there, unharmed.
    assert any(p == "int8-b32" and s < switched_at < e for s, e, p in results), results
    assert all(p == "fp32" for s, _, p in results if s > switched_at + 0.5)
    assert node.store.links() == Links(current=sha, previous=node.int8[1])
    assert node.serving() == sha


def test_fault_in_probation_rolls_back_at_once(node, probation_failing_artifact):
    url, sha = probation_failing_artifact
    before = node.store.links()
    update = node.update(url, sha, "--probation-s", "120", "--min-speed-ratio", "0")
    try:
        wait_for(lambda: node.serving() == sha or update.poll() is not None, timeout_s=300, what="the switch")
        assert node.serving() == sha, finish(update)
        with pytest.raises(RequestFailed, match="prefill failed"):
            node.answer(LONG_PROMPT)
        code, record, stderr = finish(update, timeout_s=60)  # well before the 120 s window ends
    finally:
        if update.poll() is None:
            update.kill()
    assert code == 1, stderr
    assert record["outcome"] == "rolled_back"
    assert "it failed within its 120 s probation" in record["reason"] and "Reshape" in record["reason"]
    assert node.store.links() == before and sha not in node.store.stored()
    assert node.serving() == before.current
    assert node.answer(LONG_PROMPT).served_by.precision == "fp32"


def test_status_shows_version_health_throughput_and_the_last_update(node):
    text = subprocess.run(
        [str(node.hybrid_edge), "status", "--config", str(node.config)], capture_output=True, text=True
    )
    assert text.returncode == 0, text.stderr
    current = node.store.links().current
    assert (
        f"current {current[:12]} smollm2-135m fp32; previous {node.int8[1][:12]} smollm2-135m int8-b32" in text.stdout
    )
    assert "health     SERVING" in text.stdout and "decode tokens/s" in text.stdout
    assert ": rolled back (" in text.stdout and "probation" in text.stdout


def test_restart_falls_back_to_the_last_good_artifact_when_current_is_broken(node):
    # (A restart serving `current` as it was: tests/edge_agent/test_node_agent.py.)
    good = node.store.links()
    node.stop()
    tamper(node.store.path(good.current) / "tokenizer.json")
    agent = node.start()
    assert node.answer().served_by.precision == "int8-b32"
    assert "cannot serve the current artifact" in agent.output and "serving the previous artifact" in agent.output
    assert node.store.links() == Links(current=good.previous)
    last = node.state.read().last
    assert last.outcome == "fell_back" and "tokenizer.json" in last.reason
