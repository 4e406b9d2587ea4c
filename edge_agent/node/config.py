"""An installed edge node: its configuration (agent.yaml), its files under the prefix, its update history.

CONFIG_DIR/agent.yaml        NodeConfig: region, discovery, router, ports, capacity, update gate
PREFIX/venv/                 the package, installed by `hybrid-edge install`
PREFIX/artifacts/            the artifact store (edge_agent.artifacts.store): <sha>/, current, previous
PREFIX/state.json            the last updates and their outcomes (`hybrid-edge status` shows them); on a node
                             installed under systemd a link to PREFIX/run/state.json, which the agent's user writes
PREFIX/install.json          what the installer put in the venv, so a re-run knows it is done
PREFIX/run/agent.json        written by the running agent: pid, address, what it serves, connectivity
PREFIX/update.lock           held by an install or update, so that two never overlap
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge_agent import defaults
from edge_agent.artifacts.store import Links, exclusive_lock
from edge_agent.config import EdgeAgentConfig, EdgeAgentSettings
from hybrid.errors import HybridError


class EdgeNodeError(HybridError):
    """The node is not installed, or not as asked; the message says what to run."""


class UpdateSettings(BaseModel):
    """How `hybrid-edge update` gates a new artifact and how long the agent watches it afterwards."""

    model_config = ConfigDict(extra="forbid")

    probation_s: float = Field(
        default=defaults.EDGE_PROBATION_S,
        ge=0,
        description="After the switch the previous artifact stays loaded this long; any failure of the new one "
        "switches back to it.",
    )
    min_speed_ratio: float = Field(
        default=defaults.EDGE_GATE_MIN_SPEED_RATIO,
        ge=0,
        description="The candidate must decode at least this fraction of the current artifact's tokens/s, both "
        "measured on the canary in the updater's process; 0 turns the bound off.",
    )
    canary_prompt: str = Field(
        default=defaults.EDGE_CANARY_PROMPT, min_length=1, description="Chat message the canary requests send."
    )
    canary_max_new_tokens: int = Field(
        default=defaults.EDGE_CANARY_MAX_NEW_TOKENS, ge=2, le=256, description="Tokens each canary answer decodes."
    )
    canary_requests: int = Field(
        default=defaults.EDGE_CANARY_REQUESTS, ge=1, le=32, description="Canary requests sent at once."
    )


_HOST_PORT = re.compile(r"^[^\s:/]+:[0-9]{1,5}$")


class NodeConfig(EdgeAgentSettings):
    """agent.yaml: everything `hybrid-edge run` needs; the artifact is PREFIX/artifacts/current."""

    model_config = ConfigDict(extra="forbid")

    prefix: Path = Field(
        default=defaults.EDGE_PREFIX, description="Folder holding the venv, the artifact store and the state."
    )
    router: str = Field(
        default="",
        description="The router's gRPC address, HOST:PORT. The agent serves without it (the router finds it "
        "through discovery); it is probed for `hybrid-edge status` and the logs.",
    )
    update: UpdateSettings = Field(default_factory=UpdateSettings, description="The update gate and probation.")

    @field_validator("router")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value and not _HOST_PORT.match(value):
            raise ValueError(f"router must be HOST:PORT, such as router.internal:50051; got {value!r}")
        return value

    @property
    def layout(self) -> NodeLayout:
        return NodeLayout(self.prefix)

    def agent_config(self, artifact: Path) -> EdgeAgentConfig:
        return EdgeAgentConfig(artifact=artifact, **self.model_dump(include=set(EdgeAgentSettings.model_fields)))

    def local_address(self, address: str) -> str:
        """Where a process on this node reaches an agent that reports ``address`` (it may bind every interface)."""
        host, _, port = address.rpartition(":")
        return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]', '') else host}:{port}"


def default_config_path() -> Path:
    return defaults.EDGE_CONFIG_DIR / defaults.EDGE_CONFIG_NAME


def read_node_config(path: Path) -> NodeConfig:
    path = Path(path)
    if not path.is_file():
        raise EdgeNodeError(
            f"{path} does not exist: install the node with `hybrid-edge install` first, or pass --config FILE"
        )
    try:
        return NodeConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the file'}: {e['msg']}" for e in error.errors())
        raise EdgeNodeError(
            f"{path} is not a valid agent config ({problems}): fix it, or run `hybrid-edge install` again"
        ) from None
    except yaml.YAMLError as error:
        raise EdgeNodeError(f"{path} is not YAML ({error}): fix it, or run `hybrid-edge install` again") from None


def render_node_config(config: NodeConfig) -> str:
    body = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return (
        "# The edge agent of this node (hybrid-edge). Written by `hybrid-edge install`; running it again with\n"
        "# other flags rewrites this file. `hybrid-edge run --config` reads it; the artifact it serves is\n"
        "# PREFIX/artifacts/current, which `hybrid-edge update` switches.\n" + body
    )


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Writes the whole file or nothing: readers (and a crash) never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class NodeLayout:
    prefix: Path

    @property
    def venv(self) -> Path:
        return self.prefix / "venv"

    @property
    def hybrid_edge(self) -> Path:
        return self.venv / "bin" / "hybrid-edge"

    @property
    def artifacts(self) -> Path:
        return self.prefix / "artifacts"

    @property
    def state_file(self) -> Path:
        return self.prefix / "state.json"

    @property
    def install_record(self) -> Path:
        return self.prefix / "install.json"

    @property
    def runtime_file(self) -> Path:
        return self.prefix / "run" / "agent.json"

    @contextmanager
    def update_lock(self) -> Iterator[None]:
        """Held by an install or an update; a second one is refused instead of waiting behind the first."""
        # In the prefix, which only root writes on an installed node: the agent never takes this lock.
        lock_path = self.prefix / "update.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                raise EdgeNodeError(
                    f"an install or update is already running on this node ({holder}); wait for it to finish"
                ) from None
            lock.seek(0)
            lock.truncate()
            lock.write(f"pid {os.getpid()}")
            lock.flush()
            try:
                yield
            finally:
                lock.truncate(0)
                fcntl.flock(lock, fcntl.LOCK_UN)


# --- update history (PREFIX/state.json) -------------------------------------------------------

Outcome = Literal[
    "checking", "switching", "probation", "switched", "refused", "rolled_back", "interrupted", "fell_back"
]
FINAL_OUTCOMES = ("switched", "refused", "rolled_back", "interrupted", "fell_back")


class UpdateRecord(BaseModel):
    """One attempt to change what the node serves, and how it ended."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12], description="Names the attempt in logs.")
    source: str = Field(description="Where the artifact came from: URL or path; 'SIGHUP' or 'start' for the agent's.")
    from_sha256: str | None = Field(default=None, description="Manifest hash served before.")
    to_sha256: str = Field(description="Manifest hash of the artifact it switches to.")
    to_precision: str = Field(default="", description="Precision of that artifact.")
    started_at: float = Field(default_factory=time.time, description="Unix time it began.")
    switched_at: float | None = Field(default=None, description="Unix time new requests began to go to it.")
    finished_at: float | None = Field(default=None, description="Unix time the outcome was known.")
    outcome: Outcome = Field(description="Where it stands; switched, refused, rolled_back, ... once finished.")
    reason: str = Field(default="", description="Why it ended so, in words an operator can act on.")
    probation_s: float | None = Field(default=None, description="Probation asked for by this update.")
    links_before: dict[str, str | None] = Field(
        default_factory=dict, description="current/previous before the switch: where a rollback returns to."
    )
    gate: dict[str, Any] = Field(default_factory=dict, description="What the health gate measured.")

    @property
    def finished(self) -> bool:
        return self.outcome in FINAL_OUTCOMES

    def rollback_links(self) -> Links:
        return Links(self.links_before.get("current"), self.links_before.get("previous"))


class NodeState(BaseModel):
    updates: list[UpdateRecord] = Field(default_factory=list, description="Oldest first, the last few kept.")

    def find(self, record_id: str) -> UpdateRecord | None:
        return next((r for r in self.updates if r.id == record_id), None)

    @property
    def last(self) -> UpdateRecord | None:
        return self.updates[-1] if self.updates else None


class StateFile:
    """PREFIX/state.json, shared by the updater and the agent: every change is a locked read-modify-write."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> NodeState:
        try:
            return NodeState.model_validate_json(self.path.read_text())
        except FileNotFoundError:
            return NodeState()
        except ValidationError:
            # A state file from another version must never stop an agent from serving.
            return NodeState()

    @contextmanager
    def editing(self) -> Iterator[NodeState]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.path.with_name(self.path.name + ".lock")):
            state = self.read()
            yield state
            state.updates = state.updates[-defaults.EDGE_UPDATE_HISTORY :]
            write_atomically(self._written_path(), state.model_dump_json(indent=2) + "\n")

    def _written_path(self) -> Path:
        # An installed node links PREFIX/state.json into PREFIX/run, where the agent's user may write. That one
        # link (root's, in root's folder) is followed, no further: what the user controls is replaced, not opened.
        if self.path.is_symlink():
            return self.path.parent / os.readlink(self.path)
        return self.path

    def save(self, record: UpdateRecord) -> UpdateRecord:
        """Adds the record, or replaces the one with its id."""
        with self.editing() as state:
            state.updates = [r for r in state.updates if r.id != record.id] + [record]
        return record

    def finish(self, record: UpdateRecord, outcome: Outcome, reason: str = "", **fields) -> UpdateRecord:
        record = record.model_copy(update={"outcome": outcome, "reason": reason, "finished_at": time.time(), **fields})
        return self.save(record)


# --- the running agent (PREFIX/run/agent.json) ------------------------------------------------


class AgentRuntime(BaseModel):
    """What the running agent reports about itself; rewritten by it at every change and interval."""

    pid: int = Field(description="Process id; `hybrid-edge update` sends it SIGHUP.")
    address: str = Field(description="HOST:PORT its gRPC server listens on.")
    replica_id: str = Field(description="Its id in discovery.")
    started_at: float = Field(description="Unix time it started.")
    serving_sha256: str = Field(description="Manifest hash of the artifact new requests go to.")
    serving_precision: str = Field(description="Precision of that artifact.")
    model: str = Field(description="Model name of that artifact.")
    standby_sha256: str | None = Field(default=None, description="The previous artifact, kept loaded in probation.")
    discovery: dict[str, Any] = Field(default_factory=dict, description="Registration: registered, errors, times.")
    router: dict[str, Any] = Field(default_factory=dict, description="Router probe: address, reachable, error.")
    updated_at: float = Field(default_factory=time.time, description="Unix time of this report.")


def write_runtime(layout: NodeLayout, runtime: AgentRuntime) -> None:
    write_atomically(layout.runtime_file, runtime.model_dump_json(indent=2) + "\n")


def running_agent(layout: NodeLayout) -> AgentRuntime | None:
    """The agent's report when its process is alive (a crash leaves the file behind; a pid may be reused)."""
    try:
        runtime = AgentRuntime.model_validate_json(layout.runtime_file.read_text())
    except (FileNotFoundError, ValidationError, json.JSONDecodeError):
        return None
    try:
        argv = Path(f"/proc/{runtime.pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    agent = any(Path(arg).name == "hybrid-edge" or arg == "edge_agent.node.cli" for arg in argv) and "run" in argv
    return runtime if agent else None
