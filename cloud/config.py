"""Configuration of the cloud tier, split by concern: what one replica runs, and how Serve runs it.

``ReplicaSettings`` travels to every Serve replica as ``HYBRID_*`` environment variables (that is
how the Terraform tier-spec module and the generated Serve config hand it over);
``DeploymentSettings`` becomes the deployment's autoscaling, queue and actor options.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from cloud import defaults
from hybrid import constants
from hybrid.security.tls import ENV_CA, ENV_CERT, ENV_KEY, ENV_PLAINTEXT

ENV_PREFIX = "HYBRID_"
# A node's TLS files (the Terraform modules mount them for every process there, the replicas included).
TLS_ENV = (ENV_CERT, ENV_KEY, ENV_CA, ENV_PLAINTEXT)
# HYBRID_ variables that other parts of Hybrid read, so a replica's environment may hold them.
_OTHER_ENV = {"HYBRID_CACHE_DIR", *TLS_ENV}


class CloudConfigError(ValueError):
    """A setting of the cloud tier is wrong; the message names it and what to change."""


class ReplicaSettings(BaseModel):
    """What one cloud replica serves and how it batches."""

    tier: Literal["private", "public"] = Field(
        default="private", description="Tier this deployment serves as: private (hot traffic) or public (cold, batch)."
    )
    region: str = Field(default=constants.DEFAULT_REGION, min_length=1, description="Region reported in served_by.")
    zone: str = Field(default="", description="Zone inside the region.")
    model: str = Field(
        default=constants.DEFAULT_MODEL,
        min_length=1,
        description="A known model name (smollm2-135m) or a local Hugging Face folder.",
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        default="auto", description="Weights and activations: auto is bf16 on a GPU and fp32 on a CPU."
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="Where the model runs: auto takes the GPU when one is visible."
    )
    max_batch_size: int = Field(
        default=constants.MAX_BATCH_SIZE, ge=1, le=1024, description="Sequences decoded together (cache slots)."
    )
    max_wait_ms: float = Field(
        default=constants.MAX_BATCH_WAIT_MS, ge=0, le=10_000, description="Longest a request waits for others."
    )
    max_queued_requests: int = Field(
        default=constants.MAX_QUEUED_REQUESTS,
        ge=1,
        description="Requests one replica holds waiting for a slot before it answers RESOURCE_EXHAUSTED.",
    )
    max_context_tokens: int = Field(
        default=defaults.CLOUD_MAX_CONTEXT_TOKENS,
        ge=16,
        description="Longest prompt + answer accepted; capped by the model's own window.",
    )
    stream_interval_ms: float = Field(
        default=defaults.CLOUD_STREAM_INTERVAL_MS,
        ge=0,
        le=1000,
        description="Least time between two streamed messages of one answer after the first; tokens produced "
        "in between are sent together. Each message costs the replica a round of Ray Serve's streaming protocol, "
        "or of gRPC's send path on its own port, and the router a relay.",
    )
    gil_switch_interval_ms: float = Field(
        default=defaults.CLOUD_GIL_SWITCH_INTERVAL_MS,
        gt=0,
        le=100,
        description="The replica process's GIL switch interval (Python's default is 5 ms). Each decode step "
        "waits for the GPU with the GIL released; getting it back from Serve's busy event loops takes up to "
        "this long, which at a few ms per step is a large share of the step.",
    )
    overlap_decode_steps: bool = Field(
        default=True,
        description="On a GPU, start each decode step before the host's work on the last one (picking, "
        "detokenizing, streaming), so that work runs while the GPU computes; a row's last token then costs one "
        "step of GPU time for nothing. Off: each step waits for the host. No effect on a CPU, where a step's call "
        "blocks until it is done.",
    )
    prefill_warmup_tokens: int = Field(
        default=32768,
        ge=0,
        description="On a GPU, run one prefill of each shape of at most this many tokens (rows in the batch "
        "buckets, lengths doubling from 16) before serving, so the first requests of a burst do not wait for the "
        "process to load kernels and grow its memory pool (about a second on an H200). 0 skips it; no effect on "
        "a CPU.",
    )
    replica_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="A gRPC port the replica opens itself (0: any free one), serving hybrid.v1.Inference straight "
        "from its engine with the node's mutual TLS (HYBRID_TLS_*; loopback only without), and registered in "
        "discovery in place of Serve's direct-ingress port, which Serve serves in plaintext on every interface. "
        "None registers Serve's port.",
    )
    discovery: str = Field(
        default="none",
        description="Where each replica registers itself when Serve reaches it on its own gRPC port (direct "
        "ingress): static:FILE, consul or consul:HOST:PORT; none leaves registration to whoever runs the tier.",
    )
    advertise_host: str = Field(
        default="",
        description="Address a replica registers for its own port; empty takes the node address Serve reports, "
        "which is what other machines of a multi-node cluster or a KubeRay pod network reach.",
    )
    cost_per_hour: float = Field(
        default=0.0, ge=0, description="What an hour of one replica costs, registered for cost per token."
    )
    random_weights: bool = Field(
        default=False,
        description="Benchmarks only: build the model from its config with random weights and ignore end tokens, "
        "so every answer runs to max_new_tokens. Answers are noise.",
    )

    @model_validator(mode="after")
    def _cpu_cannot_do_half(self) -> ReplicaSettings:
        if self.device == "cpu" and self.precision in ("bf16", "fp16"):
            raise ValueError(f"precision {self.precision} on device cpu is slow and unsupported: use fp32 or auto")
        return self

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ReplicaSettings:
        """Reads HYBRID_<FIELD> variables; a HYBRID_ variable that names no setting is refused (a typo)."""
        environ = os.environ if environ is None else environ
        names = {ENV_PREFIX + name.upper(): name for name in cls.model_fields}
        unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in names and k not in _OTHER_ENV)
        if unknown:
            raise CloudConfigError(
                f"unknown variable(s) {', '.join(unknown)}: the cloud tier reads {', '.join(sorted(names))}"
            )
        values = {name: environ[key] for key, name in names.items() if key in environ}
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"{ENV_PREFIX}{str(e['loc'][0]).upper() if e['loc'] else ''}: {e['msg']}" for e in error.errors()
            )
            raise CloudConfigError(f"the cloud tier's environment is wrong: {problems}") from None

    @classmethod
    def from_env_and_args(cls, environ: dict[str, str] | None, args: dict) -> ReplicaSettings:
        """HYBRID_* variables with ``args`` (a Serve application's args) taking precedence."""
        from_env = cls.from_env(environ).model_dump(exclude_defaults=True)
        return cls.model_validate({**from_env, **args})

    def to_env(self) -> dict[str, str]:
        """The HYBRID_* variables that from_env reads back to these settings (defaults left out)."""
        values = self.model_dump(exclude_defaults=True)
        return {ENV_PREFIX + name.upper(): _env_value(value) for name, value in values.items()}


class DeploymentSettings(BaseModel):
    """How Ray Serve runs the replicas: scaling, backpressure and resources."""

    min_replicas: int = Field(default=1, ge=0, description="Fewest replicas autoscaling keeps; 0 allows scale to zero.")
    max_replicas: int = Field(default=1, ge=1, description="Most replicas autoscaling starts.")
    target_ongoing_requests: float = Field(
        default=constants.MAX_BATCH_SIZE / 2,
        gt=0,
        description="Requests per replica that autoscaling aims for; below the batch size so a burst has headroom.",
    )
    max_ongoing_requests: int = Field(
        default=constants.MAX_BATCH_SIZE,
        ge=1,
        description="Requests Serve sends one replica at once: the batch size plus whatever the replica may queue.",
    )
    max_queued_requests: int = Field(
        default=defaults.CLOUD_SERVE_MAX_QUEUED_REQUESTS,
        ge=1,
        description="Requests Serve holds for busy replicas before the gRPC proxy answers with backpressure.",
    )
    num_gpus: float | None = Field(
        default=None, ge=0, description="GPUs per replica; 0 runs on CPU; None takes one where the cluster has GPUs."
    )
    num_cpus: float = Field(default=1, ge=0, description="CPUs per replica.")

    @model_validator(mode="after")
    def _bounds(self) -> DeploymentSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas}): raise max_replicas "
                "or lower min_replicas"
            )
        return self

    def autoscaling_config(self) -> dict:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
        }

    def ray_actor_options(self) -> dict:
        return {"num_gpus": self.num_gpus or 0, "num_cpus": self.num_cpus}


def _env_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
