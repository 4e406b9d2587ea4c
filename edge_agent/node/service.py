"""How an installed agent runs: as its own unprivileged user, under a hardened systemd unit, bound to
loopback unless it has TLS, with its TLS files named in its environment file.

CONFIG_DIR/agent.env          HYBRID_TLS_CERT, HYBRID_TLS_KEY, HYBRID_TLS_CA (or HYBRID_PLAINTEXT=1): read by
                              the unit (EnvironmentFile=) and by `hybrid-edge run` started by hand
CONFIG_DIR/artifact-signing.pub   the public key every artifact must be signed by (--trust), when given

The agent's user owns only what the agent writes: PREFIX/run (its report, and the update history,
which PREFIX/state.json links to), the artifact store's folder (its links) and the lock files it
takes. The prefix, the venv and the stored artifacts stay root's, so a compromised agent can rewrite
neither its code nor a model, and root never follows a link the agent's user could have planted
(edge_agent.artifacts.store.exclusive_lock, StateFile).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge_agent import defaults
from edge_agent.config import is_loopback
from edge_agent.node.config import EdgeNodeError, NodeConfig, NodeLayout
from hybrid.discovery.spec import parse_discovery_spec

TLS_ENVIRONMENT = ("HYBRID_TLS_CERT", "HYBRID_TLS_KEY", "HYBRID_TLS_CA")
PLAINTEXT_ENVIRONMENT = "HYBRID_PLAINTEXT"


@dataclass(frozen=True)
class AgentTls:
    """The agent's gRPC TLS files: its certificate and key, and the CA its callers' certificates come from."""

    cert: Path
    key: Path
    ca: Path | None = None

    @classmethod
    def from_flags(cls, cert: str | None, key: str | None, ca: str | None) -> AgentTls | None:
        if not (cert or key or ca):
            return None
        if not (cert and key):
            raise EdgeNodeError("--tls-cert and --tls-key go together (and --tls-ca needs both): give both files")
        tls = cls(Path(cert).absolute(), Path(key).absolute(), Path(ca).absolute() if ca else None)
        for flag, path in zip(("--tls-cert", "--tls-key", "--tls-ca"), (tls.cert, tls.key, tls.ca)):
            if path is not None and not path.is_file():
                raise EdgeNodeError(f"{flag} {path} does not exist: give the PEM file the agent should use")
        return tls


def agent_host(host: str | None, tls: AgentTls | None, plaintext: bool) -> str:
    """Where the installed agent binds: every interface with TLS, loopback without; plain gRPC beyond loopback
    only when asked for with --plaintext."""
    if host is None:
        return defaults.EDGE_NODE_TLS_HOST if tls is not None else defaults.EDGE_NODE_HOST
    if tls is None and not plaintext and not is_loopback(host):
        raise EdgeNodeError(
            f"--host {host} without TLS would let anyone who reaches this node use its model: give --tls-cert and "
            "--tls-key (and --tls-ca for client certificates), or pass --plaintext to serve plain gRPC anyway"
        )
    return host


def render_environment(tls: AgentTls | None, plaintext: bool) -> str:
    lines = ["# Written by `hybrid-edge install`; the agent's TLS files (paths only: never a secret itself)."]
    if tls is not None:
        for name, path in zip(TLS_ENVIRONMENT, (tls.cert, tls.key, tls.ca)):
            if path is not None:
                lines.append(f'{name}="{path}"')
    elif plaintext:
        lines.append(f"{PLAINTEXT_ENVIRONMENT}=1")
    return "\n".join(lines) + "\n"


def read_environment(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of an environment file, as systemd's EnvironmentFile= reads the ones install writes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip().strip('"')
    return values


def _writable_paths(layout: NodeLayout, node: NodeConfig) -> list[Path]:
    paths = [layout.prefix]
    spec = parse_discovery_spec(node.discovery)
    if spec.kind == "static" and spec.path is not None:
        # The agent adds itself to the file (replaced through a temporary file beside it).
        paths.append(spec.path.absolute().parent)
    return paths


def render_unit(layout: NodeLayout, config_path: Path, node: NodeConfig, user: str = defaults.EDGE_SERVICE_USER) -> str:
    # systemd splits ExecStart like a shell, with double quotes for arguments holding spaces.
    command = [str(layout.hybrid_edge), "run", "--config", str(config_path)]
    exec_start = " ".join(f'"{arg}"' if " " in arg else arg for arg in command)
    writable = " ".join(f'"{path}"' if " " in str(path) else str(path) for path in _writable_paths(layout, node))
    environment = config_path.parent / defaults.EDGE_ENV_NAME
    return f"""# Written by `hybrid-edge install`; running it again rewrites this file.
[Unit]
Description=Hybrid edge agent (region {node.region})
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User={user}
Group={user}
ExecStart={exec_start}
# `systemctl reload hybrid-edge` switches the agent to {layout.artifacts}/current, health-gated.
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=5
# On SIGTERM the agent deregisters and lets the answers in flight finish (drain_grace_s).
KillSignal=SIGTERM
TimeoutStopSec={int(node.drain_grace_s) + 15}
Environment=PYTHONUNBUFFERED=1
Environment=HF_HUB_OFFLINE=1
Environment=HF_HOME={layout.prefix}/run/huggingface
# TLS files for the agent's gRPC server (hybrid-edge install --tls-cert/--tls-key/--tls-ca).
EnvironmentFile=-{environment}
LimitNOFILE=65536
# Hardening: no privileges to gain, a read-only system, and writes only where the agent keeps its state.
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={writable}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
UMask=0027

[Install]
WantedBy=multi-user.target
"""


def ensure_service_user(user: str) -> bool:
    """Creates the agent's system user (no login, no home of its own) unless it exists; True when created."""
    try:
        pwd.getpwnam(user)
        return False
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise EdgeNodeError(f"the user {user} does not exist and useradd is missing: create a system user {user}")
    nologin = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin") if Path(p).exists()), "/bin/false")
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", nologin,
         user],
        capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise EdgeNodeError(f"could not create the user {user}: {result.stderr.strip()}")
    return True


def hand_state_to(user: str, layout: NodeLayout) -> None:
    """Gives the agent's user what the agent writes, and nothing else (see the module's docstring)."""
    uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(user).gr_gid
    run = layout.runtime_file.parent
    run.mkdir(parents=True, exist_ok=True)
    layout.artifacts.mkdir(parents=True, exist_ok=True)
    history = run / layout.state_file.name
    if not layout.state_file.is_symlink():
        if layout.state_file.exists():
            os.replace(layout.state_file, history)
        os.symlink(Path(run.name) / history.name, layout.state_file)
    locks = [layout.artifacts / ".lock", layout.state_file.with_name(layout.state_file.name + ".lock")]
    for lock in locks:
        # Created without following a link: the artifacts folder may be the agent user's already.
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644))
    for path in [run, layout.artifacts, *locks, *([history] if history.exists() else [])]:
        os.chown(path, uid, gid, follow_symlinks=False)
