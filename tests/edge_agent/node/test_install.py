"""`hybrid-edge install` into a temporary prefix: the project's own wheel in a real venv, the artifact over HTTP,
the installed agent started from PREFIX/venv and answering; refusals leave nothing behind; re-runs change nothing."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from edge_agent.artifacts.manifest import manifest_sha256
from edge_agent.artifacts.server import ArtifactServer
from edge_agent.artifacts.signing import sign_artifact
from edge_agent.artifacts.store import ArtifactStore
from edge_agent.node.config import NodeConfig, read_node_config
from edge_agent.node.install import render_unit
from hybrid.client import HybridClient
from tests.edge_agent.artifacts.samples import signing_keys
from tests.edge_agent.helpers import REPO, AgentProcess, hybrid_edge, linked_copy, tamper

pytestmark = pytest.mark.slow


@dataclass
class Installed:
    root: Path
    args: list[str]
    sha: str
    result: subprocess.CompletedProcess

    @property
    def prefix(self) -> Path:
        return self.root / "prefix"

    @property
    def config(self) -> Path:
        return self.root / "etc" / "agent.yaml"

    @property
    def hybrid_edge(self) -> Path:
        return self.prefix / "venv" / "bin" / "hybrid-edge"


def install_args(root: Path, url: str, sha: str, *package: str) -> list[str]:
    return [
        "--artifact", url, "--sha256", sha,
        "--region", "test-region", "--router", "127.0.0.1:1",
        "--discovery", f"static:{root / 'discovery.yaml'}",
        "--host", "127.0.0.1", "--port", "0", "--metrics-port", "none",
        "--prefix", str(root / "prefix"), "--config-dir", str(root / "etc"),
        *package, "--no-systemd",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def installed(edge_wheel, int8_artifact, artifact_shelf, tmp_path_factory) -> Installed:
    url, sha = artifact_shelf.put(int8_artifact, "int8")
    root = tmp_path_factory.mktemp("node")
    args = install_args(root, url, sha, "--wheel", str(edge_wheel), "--reuse-site-packages")
    result = hybrid_edge("install", *args)
    assert result.returncode == 0, result.stderr
    return Installed(root, args, sha, result)


def test_install_puts_the_wheel_in_a_venv_and_prints_how_to_run_the_agent(installed):
    assert installed.result.stdout.splitlines()[-1] == shlex.join(
        [str(installed.hybrid_edge), "run", "--config", str(installed.config)]
    )
    # The package runs from the venv (a real pip install of the wheel), not from this checkout.
    where = subprocess.run(
        [str(installed.prefix / "venv" / "bin" / "python"), "-c", "import edge_agent.node.cli, hybrid; "
         "print(edge_agent.node.cli.__file__); print(hybrid.__file__)"],
        capture_output=True, text=True, check=True, cwd=installed.root,
    ).stdout.split()  # fmt: skip
    assert all(path.startswith(str(installed.prefix / "venv")) for path in where), where
    config = read_node_config(installed.config)
    assert (config.region, config.router, config.prefix) == ("test-region", "127.0.0.1:1", installed.prefix)
    assert ArtifactStore(installed.prefix / "artifacts").links().current == installed.sha
    assert "service   skipped   --no-systemd: run the agent with" in installed.result.stderr


def test_installed_agent_streams_an_answer_and_registers(installed):
    agent = AgentProcess(installed.hybrid_edge, installed.config)
    try:
        with HybridClient(agent.address) as client:
            chunks = list(client.stream(messages=[{"role": "user", "content": "Name a colour."}], max_new_tokens=12))
        assert len(chunks) > 1 and chunks[-1].finish_reason
        assert chunks[-1].served_by.region == "test-region" and chunks[-1].served_by.precision == "int8-b32"
        (listed,) = yaml.safe_load((installed.root / "discovery.yaml").read_text())["services"]
        assert f"{listed['Address']}:{listed['Port']}" == agent.address

        status = subprocess.run(
            [str(installed.hybrid_edge), "status", "--config", str(installed.config), "--json"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["current"]["sha256"] == installed.sha and report["agent"]["serving_sha256"] == installed.sha
        assert report["agent"]["live"]["health"] == "SERVING"
        assert report["agent"]["live"]["decode_tokens_per_s"] > 0
        assert report["agent"]["discovery"]["registered"] is True
        assert report["agent"]["router"]["reachable"] is False  # nothing listens there: it serves regardless
    finally:
        assert agent.stop() == 0, agent.output
    assert yaml.safe_load((installed.root / "discovery.yaml").read_text())["services"] == []
    assert not (installed.prefix / "run" / "agent.json").exists()


def snapshot(installed: Installed) -> dict[str, float]:
    paths = [
        installed.config,
        installed.prefix / "venv" / "bin" / "python",
        installed.prefix / "install.json",
        installed.prefix / "artifacts" / installed.sha,
        installed.prefix / "artifacts" / "current",
    ]
    return {str(p): p.lstat().st_mtime_ns for p in paths}


def test_running_install_again_changes_nothing(installed):
    before = snapshot(installed)
    again = hybrid_edge("install", *installed.args)
    assert again.returncode == 0, again.stderr
    assert "nothing to do: this node is installed as asked" in again.stderr
    for step in ("artifact", "package", "config"):
        assert f"{step:<9} unchanged" in again.stderr
    assert snapshot(installed) == before


def test_install_never_replaces_a_serving_artifact(installed):
    other = "ab" * 32
    refused = hybrid_edge("install", *install_args(installed.root, "http://127.0.0.1:1/nowhere", other))
    assert refused.returncode == 2
    assert f"this node serves artifact {installed.sha[:12]} already" in refused.stderr
    assert "hybrid-edge update --config" in refused.stderr and other in refused.stderr
    assert ArtifactStore(installed.prefix / "artifacts").links().current == installed.sha


def test_tampered_artifact_is_refused_and_nothing_is_left(edge_wheel, int8_artifact, tmp_path):
    served = linked_copy(int8_artifact, tmp_path / "served" / "int8")
    server = ArtifactServer(tmp_path / "served").start()
    try:
        (sha,) = [a.sha256 for a in server.catalog.all()]
        tamper(served / "tokenizer.json")  # the server's copy goes bad after it started
        root = tmp_path / "node"
        refused = hybrid_edge("install", *install_args(root, server.url(sha), sha, "--wheel", str(edge_wheel)))
    finally:
        server.stop()
    assert refused.returncode == 2
    message = " ".join(refused.stderr.split())
    assert f"tokenizer.json from {server.url(sha)}/ has sha256" in message and "but the manifest says" in message
    assert "nothing was installed or changed" in message
    assert not root.exists() or list(root.iterdir()) == []


def test_wrong_manifest_hash_is_refused_and_nothing_is_left(edge_wheel, artifact_shelf, int8_artifact, tmp_path):
    url, sha = artifact_shelf.put(int8_artifact, "int8")
    pinned = "0" * 64
    refused = hybrid_edge("install", *install_args(tmp_path, url, pinned, "--wheel", str(edge_wheel)))
    assert refused.returncode == 2
    message = " ".join(refused.stderr.split())
    assert f"has sha256 {sha}, but --sha256 pins {pinned}: this is not the artifact you pinned" in message
    assert list(tmp_path.iterdir()) == []


def test_bad_pin_is_refused_before_anything_happens(tmp_path):
    refused = hybrid_edge("install", *install_args(tmp_path, "http://127.0.0.1:1/x", "not-a-hash"))
    assert refused.returncode == 2 and "64 hex digits" in refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_systemd_unit_runs_the_installed_agent_restarts_it_and_reloads_with_sighup(tmp_path):
    node = NodeConfig(prefix=tmp_path / "prefix", region="eu-central", drain_grace_s=20)
    unit = render_unit(node.layout, tmp_path / "etc" / "agent.yaml", node)
    assert f"ExecStart={tmp_path}/prefix/venv/bin/hybrid-edge run --config {tmp_path}/etc/agent.yaml" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "Restart=always" in unit and "TimeoutStopSec=35" in unit and "WantedBy=multi-user.target" in unit


def test_install_sh_bootstraps_a_node(edge_wheel, int8_artifact, artifact_shelf, tmp_path):
    url, sha = artifact_shelf.put(int8_artifact, "int8")
    args = install_args(tmp_path, url, sha, "--wheel", str(edge_wheel), "--reuse-site-packages")
    args[args.index("--discovery") + 1] = "none"
    result = subprocess.run(
        ["sh", str(REPO / "edge_agent" / "node" / "install.sh"), *args, "--python", sys.executable],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    hybrid_edge_path = tmp_path / "prefix" / "venv" / "bin" / "hybrid-edge"
    assert result.stdout.splitlines()[-1] == shlex.join(
        [str(hybrid_edge_path), "run", "--config", str(tmp_path / "etc" / "agent.yaml")]
    )
    # install.sh put the package in; hybrid-edge install, running from that venv, left it as it was.
    assert "package   unchanged" in result.stderr and "(running from it)" in result.stderr
    assert read_node_config(tmp_path / "etc" / "agent.yaml").discovery == "none"


def test_install_with_trust_takes_only_what_the_key_signed(edge_wheel, int8_artifact, tmp_path):
    private, public = signing_keys(tmp_path / "keys")
    _, stranger = signing_keys(tmp_path / "stranger")
    signed = linked_copy(int8_artifact, tmp_path / "served" / "int8")
    sign_artifact(signed, private)
    sha = manifest_sha256(signed)
    server = ArtifactServer(tmp_path / "served").start()
    root = tmp_path / "node"
    try:
        package = ("--wheel", str(edge_wheel), "--reuse-site-packages")
        refused = hybrid_edge("install", *install_args(root, server.url(sha), sha, "--trust", str(stranger), *package))
        assert refused.returncode == 2
        message = " ".join(refused.stderr.split())
        assert "is signed by key" in message and "nothing was installed or changed" in message
        assert not root.exists() or list(root.iterdir()) == []
        installed = hybrid_edge("install", *install_args(root, server.url(sha), sha, "--trust", str(public), *package))
        assert installed.returncode == 0, installed.stderr
    finally:
        server.stop()
    config = read_node_config(root / "etc" / "agent.yaml")
    assert config.trust_key == root / "etc" / "artifact-signing.pub" and config.host == "127.0.0.1"
    agent = AgentProcess(root / "prefix" / "venv" / "bin" / "hybrid-edge", root / "etc" / "agent.yaml")
    try:
        with HybridClient(agent.address) as client:
            assert client.complete(prompt="Hello", max_new_tokens=2).token_ids
    finally:
        assert agent.stop() == 0, agent.output
