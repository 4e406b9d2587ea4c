"""Discovery: replicas register themselves, the router watches them.

Every backend speaks the schema of DESIGN.md: service ``hybrid-inference``, tags
``tier:<edge|private|public>``, ``model:<name>``, ``precision:<name>``, and meta ``region``,
``zone``, ``capacity``, ``cost_per_hour``, ``grpc_port``. Registration goes through the
``Registry`` interface so that the static file (the embedded default) and Consul are interchangeable.
"""

from hybrid.discovery.records import Registry, ReplicaRecord
from hybrid.discovery.static import StaticFileRegistry

__all__ = ["ReplicaRecord", "Registry", "StaticFileRegistry"]
