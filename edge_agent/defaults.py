"""Defaults of the edge tier: the agent, the export quality gate, artifact serving and installed nodes."""

from __future__ import annotations

from pathlib import Path

# --- The agent ---
# Longest context (prompt + answer) an edge agent accepts; bounds its KV memory.
EDGE_MAX_CONTEXT_TOKENS = 2048
# How often an agent checks that discovery lists it (and registers again when not), and probes the router.
EDGE_REREGISTER_INTERVAL_S = 10.0
EDGE_ROUTER_PROBE_TIMEOUT_S = 2.0

# --- Export quality gate ---
# An artifact whose perplexity exceeds the full model's by more than this fraction is refused.
MAX_PERPLEXITY_INCREASE = 0.03

# --- Artifacts ---
# `hybrid artifacts serve`: where nodes fetch artifacts from.
DEFAULT_ARTIFACT_PORT = 8070
# Artifact downloads: per-read timeout and attempts per file before giving up.
EDGE_FETCH_TIMEOUT_S = 30.0
EDGE_FETCH_ATTEMPTS = 3

# --- Edge nodes: `hybrid-edge install`, `update`, `run` ---
# Where the installer puts the virtual environment, the artifact store and the update history.
EDGE_PREFIX = Path("/opt/hybrid-edge")
# Where agent.yaml goes; `hybrid-edge update/status/run` read it.
EDGE_CONFIG_DIR = Path("/etc/hybrid-edge")
EDGE_CONFIG_NAME = "agent.yaml"
EDGE_SYSTEMD_UNIT = Path("/etc/systemd/system/hybrid-edge.service")
# An installed node binds loopback unless it has TLS files; with them it serves routers on other machines.
EDGE_NODE_HOST = "127.0.0.1"
EDGE_NODE_TLS_HOST = "0.0.0.0"
# The unprivileged system user an installed agent runs as.
EDGE_SERVICE_USER = "hybrid-edge"
# Beside agent.yaml: the agent's environment (its TLS files) and the public key artifacts must be signed by.
EDGE_ENV_NAME = "agent.env"
EDGE_TRUST_KEY_NAME = "artifact-signing.pub"
# Prometheus port of an installed agent (9100 is node_exporter's on most nodes).
EDGE_NODE_METRICS_PORT = 9462
# The update's health gate: canary requests answered greedily by the candidate and, for comparison,
# by the current artifact in the same process; the candidate must decode at least this fraction of
# the current artifact's tokens/s (loose: the node keeps serving traffic while it measures).
EDGE_CANARY_PROMPT = "Write one sentence about the sea."
EDGE_CANARY_MAX_NEW_TOKENS = 16
EDGE_CANARY_REQUESTS = 2
EDGE_GATE_MIN_SPEED_RATIO = 0.5
# After the switch the previous engine stays loaded this long; any failure of the new one switches back.
EDGE_PROBATION_S = 60.0
# How long `hybrid-edge update` and `install` wait for the agent to load an artifact and answer.
EDGE_AGENT_WAIT_S = 300.0
# Update outcomes kept in PREFIX/state.json for `hybrid-edge status`.
EDGE_UPDATE_HISTORY = 20
