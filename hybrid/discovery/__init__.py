"""Discovery: replicas register themselves, the router watches them.

Every backend speaks one schema: service ``hybrid-inference``, tags
``tier:<edge|private|public>``, ``model:<name>``, ``precision:<name>``, and meta ``region``,
``zone``, ``capacity``, ``cost_per_hour``, ``grpc_port``. Registration goes through the
``Registry`` interface so that the static file (the embedded default) and Consul are interchangeable.
"""

from hybrid.discovery.records import Registry, ReplicaRecord
from hybrid.discovery.spec import DISCOVERY_SPEC_HELP, DiscoverySpec, parse_discovery_spec
from hybrid.discovery.static import StaticFileRegistry

__all__ = [
    "DISCOVERY_SPEC_HELP",
    "ConsulRegistry",
    "ConsulWatcher",
    "DiscoverySpec",
    "ReplicaRecord",
    "Registry",
    "StaticFileRegistry",
    "parse_discovery_spec",
    "registry_from_spec",
]


def registry_from_spec(spec: str, tls: bool = False) -> Registry | None:
    """The registry a discovery spec names; None for 'none'. Raises ValueError naming the accepted forms.
    ``tls``: the replicas it registers serve TLS (Consul's gRPC check must then speak it)."""
    parsed = parse_discovery_spec(spec)
    if parsed.kind == "none":
        return None
    if parsed.kind == "static":
        return StaticFileRegistry(parsed.path)
    from hybrid.discovery.consul import ConsulRegistry

    return ConsulRegistry(parsed.address, grpc_use_tls=tls)


def __getattr__(name: str):
    # Consul is an optional extra: importing hybrid.discovery must work without py-consul.
    if name in ("ConsulRegistry", "ConsulWatcher"):
        from hybrid.discovery import consul

        return getattr(consul, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
