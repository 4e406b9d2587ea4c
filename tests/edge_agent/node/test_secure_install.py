"""How an installed node is locked down, without a model or a venv: the unit and environment file the installer
writes, where the agent binds, and the trusted key that install, update and the agent hold every artifact to."""

from __future__ import annotations

import pytest
import yaml

from edge_agent import defaults
from edge_agent.artifacts.manifest import SIGNATURE_NAME
from edge_agent.artifacts.signing import TrustedKey, sign_artifact
from edge_agent.artifacts.store import ArtifactStore
from edge_agent.node import install as install_module
from edge_agent.node.config import EdgeNodeError, NodeConfig, StateFile, read_node_config
from edge_agent.node.install import InstallRequest, Step, install_node, render_unit
from edge_agent.node.service import AgentTls, agent_host, read_environment, render_environment
from edge_agent.node.update import update_node
from hybrid.errors import ArtifactError
from tests.edge_agent.artifacts.samples import rewrite_and_rehash, sample_artifact, signing_keys
from tests.edge_agent.helpers import hybrid_edge


def unit_settings(unit: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_runs_the_agent_as_its_own_user_with_the_system_read_only(tmp_path):
    node = NodeConfig(prefix=tmp_path / "prefix", region="eu-central", discovery=f"static:{tmp_path}/d/services.yaml")
    unit = unit_settings(render_unit(node.layout, tmp_path / "etc" / "agent.yaml", node))
    assert unit["User"] == ["hybrid-edge"] and unit["Group"] == ["hybrid-edge"]
    for setting, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
    }.items():
        assert unit[setting] == [value], setting
    # Writes only where the agent keeps its state, and where static discovery lists it.
    assert unit["ReadWritePaths"] == [f"{tmp_path}/prefix {tmp_path}/d"]
    assert unit["EnvironmentFile"] == [f"-{tmp_path}/etc/agent.env"]
    assert unit["ExecStart"] == [f"{tmp_path}/prefix/venv/bin/hybrid-edge run --config {tmp_path}/etc/agent.yaml"]
    other = unit_settings(render_unit(node.layout, tmp_path / "agent.yaml", node, user="edge-svc"))
    assert other["User"] == ["edge-svc"] and other["Group"] == ["edge-svc"]


def test_agent_binds_loopback_unless_it_has_tls(tmp_path):
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("pem")
    tls = AgentTls.from_flags(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"), str(tmp_path / "ca.pem"))
    assert agent_host(None, None, plaintext=False) == "127.0.0.1"
    assert agent_host(None, tls, plaintext=False) == "0.0.0.0"
    assert agent_host("10.0.0.5", tls, plaintext=False) == "10.0.0.5"
    assert agent_host("0.0.0.0", None, plaintext=True) == "0.0.0.0"
    with pytest.raises(EdgeNodeError, match="--host 0.0.0.0 without TLS.*--tls-cert.*--plaintext"):
        agent_host("0.0.0.0", None, plaintext=False)
    with pytest.raises(EdgeNodeError, match="--tls-cert and --tls-key go together"):
        AgentTls.from_flags(str(tmp_path / "cert.pem"), None, None)
    with pytest.raises(EdgeNodeError, match="--tls-key .*missing.pem does not exist"):
        AgentTls.from_flags(str(tmp_path / "cert.pem"), str(tmp_path / "missing.pem"), None)


def test_environment_file_names_the_tls_files(tmp_path):
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("pem")
    tls = AgentTls.from_flags(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"), str(tmp_path / "ca.pem"))
    path = tmp_path / "agent.env"
    path.write_text(render_environment(tls, plaintext=False))
    assert read_environment(path) == {
        "HYBRID_TLS_CERT": str(tmp_path / "cert.pem"),
        "HYBRID_TLS_KEY": str(tmp_path / "key.pem"),
        "HYBRID_TLS_CA": str(tmp_path / "ca.pem"),
    }
    path.write_text(render_environment(None, plaintext=True))
    assert read_environment(path) == {"HYBRID_PLAINTEXT": "1"}
    path.write_text(render_environment(None, plaintext=False))
    assert read_environment(path) == {}


def test_cli_refuses_a_public_plaintext_agent_before_anything_happens(tmp_path):
    refused = hybrid_edge(
        "install", "--artifact", str(tmp_path / "a"), "--sha256", "ab" * 32, "--host", "0.0.0.0",
        "--prefix", str(tmp_path / "prefix"), "--config-dir", str(tmp_path / "etc"), "--no-systemd",
    )  # fmt: skip
    assert refused.returncode == 2 and "without TLS" in refused.stderr and "--plaintext" in refused.stderr
    assert list(tmp_path.iterdir()) == []


# --- install, update and the agent with a trusted key ------------------------------------------


@pytest.fixture
def keys(tmp_path):
    return signing_keys(tmp_path / "keys")


@pytest.fixture
def no_pip(monkeypatch):
    """The package step is the slow install tests' business (tests/edge_agent/node/test_install.py)."""
    monkeypatch.setattr(install_module, "ensure_package", lambda *args: Step("package", "unchanged", "skipped here"))


def request_for(tmp_path, source, sha, **fields) -> InstallRequest:
    node = NodeConfig(prefix=tmp_path / "prefix", region="test-region", discovery="none", port=0)
    return InstallRequest(
        artifact=str(source), sha256=sha, node=node, config_path=tmp_path / "etc" / "agent.yaml", systemd=False,
        **fields,
    )  # fmt: skip


def test_install_with_trust_refuses_an_unsigned_artifact_and_leaves_nothing(tmp_path, keys, no_pip):
    sha = sample_artifact(tmp_path / "unsigned")
    with pytest.raises(ArtifactError, match="is not signed"):
        install_node(request_for(tmp_path, tmp_path / "unsigned", sha, trust=keys[1]))
    assert not (tmp_path / "prefix").exists() and not (tmp_path / "etc").exists()


def test_install_with_trust_keeps_the_key_and_names_it_in_agent_yaml(tmp_path, keys, no_pip):
    sha = sample_artifact(tmp_path / "signed")
    sign_artifact(tmp_path / "signed", keys[0])
    report = install_node(request_for(tmp_path, tmp_path / "signed", sha, trust=keys[1]))
    kept = tmp_path / "etc" / defaults.EDGE_TRUST_KEY_NAME
    assert [(s.name, s.outcome) for s in report.steps][:3] == [
        ("artifact", "installed"),
        ("package", "unchanged"),
        ("trust", "installed"),
    ]
    assert kept.read_bytes() == keys[1].read_bytes()
    node = read_node_config(tmp_path / "etc" / "agent.yaml")
    assert node.trust_key == kept and node.trusted_key().id == TrustedKey.load(keys[1]).id
    assert node.metrics_host == "127.0.0.1"
    assert (ArtifactStore(node.layout.artifacts).path(sha) / SIGNATURE_NAME).is_file()
    assert yaml.safe_load((tmp_path / "etc" / "agent.yaml").read_text())["trust_key"] == str(kept)


def test_update_on_a_trusting_node_refuses_unsigned_and_tampered_artifacts(tmp_path, keys, no_pip):
    sha = sample_artifact(tmp_path / "signed")
    sign_artifact(tmp_path / "signed", keys[0])
    install_node(request_for(tmp_path, tmp_path / "signed", sha, trust=keys[1]))
    node = read_node_config(tmp_path / "etc" / "agent.yaml")
    state = StateFile(node.layout.state_file)

    unsigned = sample_artifact(tmp_path / "unsigned", "v2")
    with pytest.raises(ArtifactError, match="is not signed"):
        update_node(node, str(tmp_path / "unsigned"), unsigned)
    assert state.read().last.outcome == "refused" and "is not signed" in state.read().last.reason

    tampered = rewrite_and_rehash(tmp_path / "signed", "chat_template.jinja", b"{{ 'changed' }}")
    with pytest.raises(ArtifactError, match="does not match its manifest.json"):
        update_node(node, str(tmp_path / "signed"), tampered)
    assert ArtifactStore(node.layout.artifacts).stored() == [sha]

    _, other = signing_keys(tmp_path / "other")
    with pytest.raises(EdgeNodeError, match="but this node trusts key"):
        update_node(node, str(tmp_path / "unsigned"), unsigned, trust=other)


def test_agent_with_a_trust_key_refuses_an_unsigned_artifact(tmp_path, keys):
    from edge_agent.config import EdgeAgentSettings
    from edge_agent.server import load_artifact

    sha = sample_artifact(tmp_path / "unsigned")
    with pytest.raises(ArtifactError, match="is not signed"):
        load_artifact(tmp_path / "unsigned", EdgeAgentSettings(trust_key=keys[1]), "edge-test", expected_sha256=sha)


def test_install_again_without_trust_does_not_drop_the_signature_check(tmp_path, keys, no_pip):
    sha = sample_artifact(tmp_path / "signed")
    sign_artifact(tmp_path / "signed", keys[0])
    install_node(request_for(tmp_path, tmp_path / "signed", sha, trust=keys[1]))
    with pytest.raises(EdgeNodeError, match="accepts only artifacts signed by the key in .*pass --trust"):
        install_node(request_for(tmp_path, tmp_path / "signed", sha))
    kept = tmp_path / "etc" / defaults.EDGE_TRUST_KEY_NAME
    again = install_node(request_for(tmp_path, tmp_path / "signed", sha, trust=kept))
    assert not again.changed


def test_state_the_agent_writes_never_steers_a_root_writer(tmp_path):
    import grp
    import os
    import pwd

    from edge_agent.node.config import UpdateRecord
    from edge_agent.node.service import hand_state_to

    user = pwd.getpwuid(os.getuid()).pw_name
    if grp.getgrgid(os.getgid()).gr_name != user:
        pytest.skip("needs a user whose group has its name, as a system user's has")
    layout = NodeConfig(prefix=tmp_path / "prefix").layout
    state = StateFile(layout.state_file)
    state.save(UpdateRecord(source="before", to_sha256="ab" * 32, outcome="switched"))
    hand_state_to(user, layout)
    # The history moved into PREFIX/run, which the agent's user owns, and PREFIX/state.json links to it.
    assert layout.state_file.is_symlink() and (layout.prefix / "run" / "state.json").is_file()
    assert state.read().last.source == "before"
    # What that user could plant: run/state.json as a link to a file it may not write. The next write replaces
    # the link; the file it pointed at is untouched.
    victim = tmp_path / "victim"
    victim.write_text("not yours\n")
    (layout.prefix / "run" / "state.json").unlink()
    (layout.prefix / "run" / "state.json").symlink_to(victim)
    state.save(UpdateRecord(source="after", to_sha256="ab" * 32, outcome="switched"))
    assert victim.read_text() == "not yours\n"
    assert state.read().last.source == "after" and not (layout.prefix / "run" / "state.json").is_symlink()
    # A planted lock link is refused, not followed.
    (layout.artifacts / ".lock").unlink()
    (layout.artifacts / ".lock").symlink_to(victim)
    with pytest.raises(OSError):
        with ArtifactStore(layout.artifacts).locked():
            pass
    assert victim.read_text() == "not yours\n"


def test_status_says_which_key_the_node_trusts_and_whether_it_signed_what_serves(tmp_path, keys, no_pip):
    from edge_agent.node.status import node_status, render_status

    sha = sample_artifact(tmp_path / "signed")
    sign_artifact(tmp_path / "signed", keys[0])
    install_node(request_for(tmp_path, tmp_path / "signed", sha, trust=keys[1]))
    node = read_node_config(tmp_path / "etc" / "agent.yaml")
    key_id = TrustedKey.load(keys[1]).id
    status = node_status(node)
    assert status["trust_key"]["key_id"] == key_id
    assert status["current"]["signature"] == f"signed by the trusted key {key_id}"
    (ArtifactStore(node.layout.artifacts).path(sha) / SIGNATURE_NAME).unlink()
    line = next(line for line in render_status(node_status(node)) if line.startswith("signing"))
    assert f"only artifacts signed by key {key_id}" in line and "current: REFUSED" in line and "is not signed" in line


def test_install_flags_bind_every_interface_with_tls_and_name_the_files(tmp_path):
    from edge_agent.node.cli import _install_request, build_parser

    for name in ("agent.crt", "agent.key", "ca.crt"):
        (tmp_path / name).write_text("pem")
    flags = ["install", "--artifact", "https://artifacts.internal/a", "--sha256", "ab" * 32, "--region", "eu",
             "--discovery", "none", "--prefix", str(tmp_path / "prefix"), "--config-dir", str(tmp_path / "etc")]  # fmt: skip
    tls = ["--tls-cert", str(tmp_path / "agent.crt"), "--tls-key", str(tmp_path / "agent.key")]
    request = _install_request(build_parser().parse_args([*flags, *tls, "--tls-ca", str(tmp_path / "ca.crt")]))
    assert request.node.host == "0.0.0.0" and request.node.metrics_host == "127.0.0.1"
    assert request.tls == AgentTls(tmp_path / "agent.crt", tmp_path / "agent.key", tmp_path / "ca.crt")
    assert request.service_user == "hybrid-edge" and not request.plaintext
    plain = _install_request(build_parser().parse_args(flags))
    assert plain.node.host == "127.0.0.1" and plain.tls is None
    with pytest.raises(ValueError, match="--plaintext turns TLS off"):
        _install_request(build_parser().parse_args([*flags, *tls, "--plaintext"]))
