"""`hybrid-edge status`: what the node serves, whether the agent answers, how fast, and the last update."""

from __future__ import annotations

import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge_agent.artifacts.manifest import MANIFEST_NAME, SIGNATURE_NAME, read_manifest
from edge_agent.artifacts.signing import TrustedKey
from edge_agent.artifacts.store import ArtifactStore
from edge_agent.node.config import NodeConfig, StateFile, running_agent
from hybrid.errors import ArtifactError
from hybrid.security.tls import TlsSettings, secure_channel
from hybrid.v1 import inference_pb2 as pb
from hybrid.v1 import inference_pb2_grpc as pb_grpc

PROBE_TIMEOUT_S = 3.0


def _artifact(store: ArtifactStore, sha: str | None, trusted: TrustedKey | None) -> dict[str, Any] | None:
    if sha is None:
        return None
    folder = store.path(sha)
    try:
        manifest = read_manifest(folder)
    except ArtifactError as error:
        return {"sha256": sha, "error": str(error)}
    found = {"sha256": sha, "model": manifest.model, "precision": manifest.precision}
    if trusted is not None:
        signature = folder / SIGNATURE_NAME
        try:
            data = signature.read_bytes() if signature.is_file() else None
            trusted.check((folder / MANIFEST_NAME).read_bytes(), data, str(folder))
            found["signature"] = f"signed by the trusted key {trusted.id}"
        except ArtifactError as error:
            found["signature"] = f"REFUSED: {error}"
    return found


def probe_agent(address: str, tls: TlsSettings | None = None) -> dict[str, Any]:
    """Health and load of the agent at ``address``, live over gRPC (mutual TLS with the node's certificate when
    it serves TLS: its server certificate is a client one too, and answers to loopback)."""
    try:
        with secure_channel(address, tls, aio=False) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT_S)
            load = pb_grpc.InferenceStub(channel).GetLoad(pb.GetLoadRequest(), timeout=PROBE_TIMEOUT_S)
    except grpc.RpcError as error:
        return {"health": "UNREACHABLE", "error": f"{error.code().name}: {error.details()}"}
    return {
        "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
        "precision": load.precision,
        "active": load.active,
        "capacity": load.capacity,
        "queue_depth": load.queue_depth,
        "decode_tokens_per_s": round(load.tokens_per_second, 2),
        "draining": load.draining,
    }


def node_status(node: NodeConfig) -> dict[str, Any]:
    layout = node.layout
    store = ArtifactStore(layout.artifacts)
    links = store.links()
    try:
        trusted = node.trusted_key()
    except ArtifactError as error:
        trusted, trust_error = None, str(error)
    else:
        trust_error = ""
    runtime = running_agent(layout)
    last = StateFile(layout.state_file).read().last
    status: dict[str, Any] = {
        "prefix": str(node.prefix),
        "region": node.region,
        "trust_key": {"path": str(node.trust_key), "key_id": trusted.id if trusted else None, "error": trust_error}
        if node.trust_key is not None
        else None,
        "current": _artifact(store, links.current, trusted),
        "previous": _artifact(store, links.previous, trusted),
        "agent": None,
        "last_update": last.model_dump(mode="json") if last else None,
    }
    if runtime is not None:
        status["agent"] = {
            **runtime.model_dump(mode="json"),
            "live": probe_agent(node.local_address(runtime.address), node.tls),
        }
    return status


def healthy(status: dict[str, Any]) -> bool:
    agent = status.get("agent")
    return bool(agent) and agent["live"].get("health") == "SERVING"


def _since(when: float) -> str:
    seconds = max(0.0, time.time() - when)
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )


def _ago(when: float | None) -> str:
    return "never" if not when else f"{_since(when)} ago"


def _short(artifact: dict[str, Any] | None) -> str:
    if artifact is None:
        return "none"
    if "error" in artifact:
        return f"{artifact['sha256'][:12]} (unreadable: {artifact['error']})"
    return f"{artifact['sha256'][:12]} {artifact['model']} {artifact['precision']}"


def render_status(status: dict[str, Any]) -> list[str]:
    lines = [
        f"node       region {status['region']}, prefix {status['prefix']}",
        f"version    current {_short(status['current'])}; previous {_short(status['previous'])}",
    ]
    trust = status.get("trust_key")
    if trust is not None:
        signature = (status["current"] or {}).get("signature", "no current artifact")
        key = trust["error"] or f"key {trust['key_id']} ({trust['path']})"
        lines.append(f"signing    only artifacts signed by {key}; current: {signature}")
    agent = status["agent"]
    if agent is None:
        lines.append("agent      not running (start it: systemctl start hybrid-edge, or the command install printed)")
    else:
        live = agent["live"]
        serving = f"{agent['serving_sha256'][:12]} {agent['serving_precision']}"
        if agent.get("standby_sha256"):
            serving += f" (probation; {agent['standby_sha256'][:12]} kept loaded)"
        lines.append(
            f"agent      pid {agent['pid']} on {agent['address']}, up {_since(agent['started_at'])}, serves {serving}"
        )
        if live["health"] == "UNREACHABLE":
            lines.append(f"health     UNREACHABLE ({live['error']})")
        else:
            lines.append(
                f"health     {live['health']}; {live['active']}/{live['capacity']} decoding, {live['queue_depth']} queued"
            )
            lines.append(f"throughput {live['decode_tokens_per_s']:.1f} decode tokens/s (last measured)")
        discovery = agent["discovery"]
        if discovery:
            if discovery.get("failing_since"):
                state = (
                    f"unreachable for {_since(discovery['failing_since'])} ({discovery['last_error']}); serving anyway"
                )
            elif discovery.get("registered"):
                state = f"registered, checked {_ago(discovery['last_ok_at'])}"
            else:
                state = "not registered yet"
            lines.append(f"discovery  {discovery['spec']}: {state}")
        router = agent["router"]
        if router:
            reach = {True: "reachable", False: f"unreachable ({router['last_error']})", None: "not probed yet"}
            lines.append(f"router     {router['address']}: {reach[router['reachable']]}")
    last = status["last_update"]
    if last is None:
        lines.append("update     none yet")
    else:
        target = f"{(last['from_sha256'] or 'none')[:12]} -> {last['to_sha256'][:12]} {last['to_precision']}".rstrip()
        when = _ago(last["finished_at"] or last["started_at"])
        lines.append(f"update     {target}: {last['outcome'].replace('_', ' ')} ({when})")
        if last["reason"]:
            lines.append(f"           {last['reason']}")
    return lines
