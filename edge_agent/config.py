"""Configuration of one edge agent."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from edge_agent import defaults
from edge_agent.artifacts.signing import TrustedKey
from hybrid import constants
from hybrid.discovery.spec import DISCOVERY_SPEC_HELP, parse_discovery_spec
from hybrid.security.tls import TlsSettings


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine's loopback, reachable from nowhere else."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


class EdgeAgentSettings(BaseModel):
    """Everything about an edge agent but the artifact it serves: `hybrid-edge` keeps these in agent.yaml."""

    host: str = Field(default=constants.DEFAULT_HOST, description="Address the gRPC server binds.")
    port: int = Field(default=constants.DEFAULT_EDGE_PORT, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    region: str = Field(default=constants.DEFAULT_REGION, description="Region reported in discovery and served_by.")
    zone: str = Field(default="", description="Zone inside the region.")
    replica_id: str = Field(default="", description="Unique id; made from host, region and port when empty.")
    max_batch_size: int = Field(
        default=constants.MAX_BATCH_SIZE, ge=1, le=256, description="Sequences decoded at once."
    )
    max_wait_ms: float = Field(
        default=constants.MAX_BATCH_WAIT_MS,
        ge=0,
        le=10_000,
        description="Longest a request waits for others to batch with.",
    )
    max_queued_requests: int = Field(
        default=constants.MAX_QUEUED_REQUESTS, ge=1, description="Queue bound before RESOURCE_EXHAUSTED."
    )
    max_context_tokens: int = Field(
        default=defaults.EDGE_MAX_CONTEXT_TOKENS, ge=16, description="Longest prompt + answer accepted."
    )
    num_threads: int = Field(default=0, ge=0, description="ONNX Runtime threads; 0 uses the physical cores.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where the model runs: auto takes ONNX Runtime's CUDA provider when it is installed (the "
        "edge-gpu extra) and a GPU answers, else the CPU with a logged warning on a node that has a GPU; cuda "
        "refuses to start without it; cpu never tries.",
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Prometheus /metrics port; None turns it off."
    )
    metrics_host: str = Field(
        default=constants.DEFAULT_HOST,
        description="Address /metrics binds: loopback unless the operator opens it (a scraper on another machine).",
    )
    trust_key: Path | None = Field(
        default=None,
        description="Public key (PEM, from `hybrid artifacts keygen`) that must have signed every artifact this "
        "agent loads; None accepts unsigned artifacts (the sha256 pins still hold).",
    )
    tls: TlsSettings = Field(
        default_factory=TlsSettings,
        description="Mutual TLS of the gRPC server: callers (the router) must present a certificate of tls.ca. "
        "None means plaintext, which binds loopback only unless tls.plaintext.",
    )
    discovery: str = Field(
        default=f"static:{constants.DEFAULT_STATIC_DISCOVERY_FILE}",
        description=f"Where to register: {DISCOVERY_SPEC_HELP}.",
    )
    advertise_host: str = Field(default="", description="Address others reach it at; the bind host when empty.")
    cost_per_hour: float = Field(default=0.0, ge=0, description="Cost of this node per hour, for cost per token.")
    drain_grace_s: float = Field(
        default=constants.DRAIN_GRACE_S, ge=0, description="How long to let streams finish on shutdown."
    )
    reregister_interval_s: float = Field(
        default=defaults.EDGE_REREGISTER_INTERVAL_S,
        gt=0,
        description="How often the agent checks that discovery still lists it, and registers again when not "
        "(after an outage, or when Consul dropped it).",
    )

    @field_validator("discovery")
    @classmethod
    def _known_discovery(cls, value: str) -> str:
        parse_discovery_spec(value)
        return value

    @model_validator(mode="after")
    def _not_open_in_plaintext(self) -> EdgeAgentSettings:
        # Said when the settings are written (install, flags), not first when the agent starts.
        self.tls.check_bind(self.host)
        return self

    def resolved_replica_id(self, port: int) -> str:
        return self.replica_id or f"edge-{self.region}-{socket.gethostname()}-{port}"

    def trusted_key(self) -> TrustedKey | None:
        """The loaded trust key; ArtifactError, saying what to fix, when the file is missing or not a public key."""
        return TrustedKey.load(self.trust_key) if self.trust_key is not None else None


class EdgeAgentConfig(EdgeAgentSettings):
    artifact: Path = Field(description="Folder of the edge artifact built by `hybrid export`.")

    @model_validator(mode="after")
    def _fill_ids(self) -> EdgeAgentConfig:
        if not (self.artifact / "manifest.json").is_file():
            raise ValueError(
                f"{self.artifact} holds no manifest.json: build an artifact with `hybrid export --out {self.artifact}`"
            )
        if self.max_context_tokens < 16:
            raise ValueError("max_context_tokens must be at least 16")
        return self
