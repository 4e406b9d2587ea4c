"""Discovery: replicas register themselves, the router watches them.

Every backend speaks the schema of DESIGN.md: service ``hybrid-inference``, tags
``tier:<edge|private|public>``, ``model:<name>``, ``precision:<name>``, and meta ``region``,
``zone``, ``capacity``, ``cost_per_hour``, ``grpc_port``. Registration goes through the
``Registry`` interface so that the static file (the embedded default) and Consul are interchangeable.
"""

from hybrid.discovery.records import Registry, ReplicaRecord
from hybrid.discovery.static import StaticFileRegistry

__all__ = ["ConsulRegistry", "ConsulWatcher", "ReplicaRecord", "Registry", "StaticFileRegistry", "registry_from_spec"]

DISCOVERY_SPEC_HELP = "'static:FILE', 'consul' (CONSUL_HTTP_ADDR or the local agent), 'consul:HOST:PORT' or 'none'"


def registry_from_spec(spec: str) -> Registry | None:
    """The registry a discovery spec names; None for 'none'. Raises ValueError naming the accepted forms."""
    if spec == "none":
        return None
    if spec.startswith("static:") and spec[len("static:") :]:
        return StaticFileRegistry(spec[len("static:") :])
    if spec == "consul" or spec.startswith("consul:"):
        from hybrid.discovery.consul import ConsulRegistry

        return ConsulRegistry(spec[len("consul:") :] or None)
    raise ValueError(f"discovery {spec!r} is unknown: use {DISCOVERY_SPEC_HELP}")


def __getattr__(name: str):
    # Consul is an optional extra: importing hybrid.discovery must work without py-consul.
    if name in ("ConsulRegistry", "ConsulWatcher"):
        from hybrid.discovery import consul

        return getattr(consul, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
