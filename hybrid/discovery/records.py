from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field, field_validator

from hybrid import constants


class ReplicaRecord(BaseModel):
    """One replica as discovery knows it. Maps one to one onto a Consul service entry."""

    id: str = Field(description="Unique replica id; the Consul service ID.")
    address: str = Field(description="Host the replica's gRPC server listens on.")
    port: int = Field(ge=1, le=65535, description="Port of its hybrid.v1.Inference service.")
    tier: str = Field(description="edge, private or public.")
    model: str = Field(description="Model name it serves.")
    precision: str = Field(description="What it runs, e.g. int8-b32 or bf16.")
    region: str = Field(description="Region it runs in.")
    zone: str = Field(default="", description="Zone inside the region.")
    capacity: int = Field(ge=1, description="Sequences it decodes at once.")
    cost_per_hour: float = Field(default=0.0, ge=0, description="What an hour of it costs, for cost per token.")
    application: str = Field(
        default="",
        description="Ray Serve application to ask for (the proxy's `application` metadata), when its cluster runs "
        "several; empty for edge agents and one-application clusters.",
    )
    serve_replica: str = Field(
        default="",
        description="Ray Serve's id of the one replica this record reaches on its own gRPC port (direct ingress); "
        "empty for a tier reached through Serve's proxy, and for edge agents.",
    )

    @field_validator("tier")
    @classmethod
    def _known_tier(cls, tier: str) -> str:
        if tier not in ("edge", "private", "public"):
            raise ValueError(f"tier must be edge, private or public, not {tier!r}")
        return tier

    def tags(self) -> list[str]:
        return [f"tier:{self.tier}", f"model:{self.model}", f"precision:{self.precision}"]

    def meta(self) -> dict[str, str]:
        return {
            "region": self.region,
            "zone": self.zone,
            "capacity": str(self.capacity),
            "cost_per_hour": str(self.cost_per_hour),
            "grpc_port": str(self.port),
            **({"serve_application": self.application} if self.application else {}),
            **({"serve_replica": self.serve_replica} if self.serve_replica else {}),
        }

    def to_service(self) -> dict:
        """The entry as Consul's agent/service/register takes it (and as the static file stores it)."""
        return {
            "ID": self.id,
            "Name": constants.SERVICE_NAME,
            "Address": self.address,
            "Port": self.port,
            "Tags": self.tags(),
            "Meta": self.meta(),
        }

    @classmethod
    def from_service(cls, service: dict) -> ReplicaRecord:
        """Parses a Consul service entry (or a static file entry) back into a record."""
        tags = dict(tag.split(":", 1) for tag in service.get("Tags", []) if ":" in tag)
        meta = service.get("Meta") or {}
        return cls(
            id=service["ID"],
            address=service.get("Address") or "127.0.0.1",
            port=int(meta.get("grpc_port") or service["Port"]),
            tier=tags.get("tier", ""),
            model=tags.get("model", ""),
            precision=tags.get("precision", ""),
            region=meta.get("region", ""),
            zone=meta.get("zone", ""),
            capacity=int(meta.get("capacity", 1)),
            cost_per_hour=float(meta.get("cost_per_hour", 0.0)),
            application=meta.get("serve_application", ""),
            serve_replica=meta.get("serve_replica", ""),
        )


def prefer_direct_replicas(records: list[ReplicaRecord]) -> list[ReplicaRecord]:
    """Leaves out the proxy record of a Serve application whose replicas are also listed on their own ports.

    A replica reached directly reports its own load and answers without the proxy's extra hop; the proxy,
    which reaches one replica per call, stays listed only for applications with no direct replica.
    """
    direct = {r.application for r in records if r.serve_replica}
    return [r for r in records if r.serve_replica or not r.application or r.application not in direct]


class Registry(Protocol):
    """What a replica needs from discovery."""

    def register(self, record: ReplicaRecord) -> None: ...

    def deregister(self, replica_id: str) -> None: ...

    def is_registered(self, record: ReplicaRecord) -> bool:
        """Whether discovery holds exactly this record (not just its id): what re-registration checks."""
        ...

    def list(self) -> list[ReplicaRecord]: ...
