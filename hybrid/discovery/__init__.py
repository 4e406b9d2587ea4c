"""Discovery: replicas register themselves, the router watches them.

Every backend speaks the schema of DESIGN.md: service ``hybrid-inference``, tags
``tier:<edge|private|public>``, ``model:<name>``, ``precision:<name>``, and meta ``region``,
``zone``, ``capacity``, ``cost_per_hour``, ``grpc_port``. Registration goes through the
``Registry`` interface so that the static file (the embedded default) and Consul are interchangeable.
"""

from hybrid.discovery.records import Registry, ReplicaRecord
from hybrid.discovery.static import StaticFileRegistry

__all__ = ["ConsulRegistry", "ConsulWatcher", "ReplicaRecord", "Registry", "StaticFileRegistry"]


def __getattr__(name: str):
    # Consul is an optional extra: importing hybrid.discovery must work without py-consul.
    if name in ("ConsulRegistry", "ConsulWatcher"):
        from hybrid.discovery import consul

        return getattr(consul, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
