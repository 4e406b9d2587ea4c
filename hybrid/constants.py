"""Defaults shared by every component. Change them here, nowhere else."""

from __future__ import annotations

import os
from pathlib import Path

# --- Batching (DESIGN "Batching") ---
MAX_BATCH_SIZE = 32
MAX_BATCH_WAIT_MS = 50.0
# Requests held waiting for a batch slot before new ones get RESOURCE_EXHAUSTED.
MAX_QUEUED_REQUESTS = 256
# Floor of the retry hint given with RESOURCE_EXHAUSTED.
MIN_RETRY_AFTER_MS = 100

# --- Requests ---
DEFAULT_MAX_NEW_TOKENS = 128
MAX_NEW_TOKENS_LIMIT = 4096
MAX_PROMPT_CHARS = 64_000
MAX_STOP_STRINGS = 8
# Identifiers and strings a request carries: echoed into every chunk or held by the router, so bounded.
MAX_STOP_STRING_CHARS = 256
MAX_REQUEST_ID_CHARS = 128
MAX_AFFINITY_KEY_CHARS = 256
MAX_CLIENT_REGION_CHARS = 64
MAX_MODEL_NAME_CHARS = 256
MAX_TEMPERATURE = 2.0
# Longest context (prompt + answer) an edge agent accepts; bounds its KV memory.
EDGE_MAX_CONTEXT_TOKENS = 2048
# The same for a cloud replica; its KV cache grows to the longest running sequence, up to this.
CLOUD_MAX_CONTEXT_TOKENS = 2048

# --- Models ---
DEFAULT_MODEL = "smollm2-135m"
CACHE_DIR = Path(os.environ.get("HYBRID_CACHE_DIR", Path.home() / ".cache" / "hybrid"))

# --- Export quality gate ---
# An artifact whose perplexity exceeds the full model's by more than this fraction is refused.
MAX_PERPLEXITY_INCREASE = 0.03

# --- Discovery (DESIGN "Discovery") ---
SERVICE_NAME = "hybrid-inference"
DEFAULT_STATIC_DISCOVERY_FILE = CACHE_DIR / "discovery.yaml"
# Consul (durations are Go duration strings, as Consul takes them).
CONSUL_DEFAULT_ADDR = "127.0.0.1:8500"
CONSUL_CHECK_INTERVAL = "10s"
CONSUL_CHECK_TIMEOUT = "5s"
# A replica whose check stays critical this long is removed from the catalog altogether.
CONSUL_DEREGISTER_CRITICAL_AFTER = "1m"
# TTL checks: the replica must call heartbeat() more often than this.
CONSUL_CHECK_TTL = "30s"
# How long one blocking query may be held by the agent.
CONSUL_WATCH_WAIT = "30s"
# Sort replicas by round-trip time from the agent the router talks to.
CONSUL_WATCH_NEAR = "_agent"
# Least time between two successive watch queries.
CONSUL_WATCH_MIN_INTERVAL_S = 0.1
# Backoff of the watcher after a failed query, full jitter between these bounds.
CONSUL_BACKOFF_MIN_S = 0.5
CONSUL_BACKOFF_MAX_S = 30.0
# Connect/answer timeout of one HTTP request; blocking queries get their wait on top.
CONSUL_HTTP_TIMEOUT_S = 10.0

# --- Servers ---
DEFAULT_HOST = "127.0.0.1"
DEFAULT_EDGE_PORT = 50061
DEFAULT_ROUTER_PORT = 50051
DEFAULT_REGION = "local"
# Seconds a draining server waits for streams in flight before it stops.
DRAIN_GRACE_S = 30.0
# The router's OpenAI-compatible HTTP front.
DEFAULT_ROUTER_HTTP_PORT = 8080

# --- Edge nodes: `hybrid-edge install`, `update`, `run` (issue 6) ---
# Where the installer puts the virtual environment, the artifact store and the update history.
EDGE_PREFIX = Path("/opt/hybrid-edge")
# Where agent.yaml goes; `hybrid-edge update/status/run` read it.
EDGE_CONFIG_DIR = Path("/etc/hybrid-edge")
EDGE_CONFIG_NAME = "agent.yaml"
EDGE_SYSTEMD_UNIT = Path("/etc/systemd/system/hybrid-edge.service")
# An installed node serves routers on other machines, so it binds every interface.
EDGE_NODE_HOST = "0.0.0.0"
# Prometheus port of an installed agent (9100 is node_exporter's on most nodes).
EDGE_NODE_METRICS_PORT = 9462
# `hybrid artifacts serve`: where nodes fetch artifacts from.
DEFAULT_ARTIFACT_PORT = 8070
# How often an agent checks that discovery lists it (and registers again when not), and probes the router.
EDGE_REREGISTER_INTERVAL_S = 10.0
EDGE_ROUTER_PROBE_TIMEOUT_S = 2.0
# Artifact downloads: per-read timeout and attempts per file before giving up.
EDGE_FETCH_TIMEOUT_S = 30.0
EDGE_FETCH_ATTEMPTS = 3
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

# --- Cloud tier (Ray Serve) ---
# Must match terraform/modules/tier-spec: the names the generated Serve config and KubeRay use.
CLOUD_APP_IMPORT_PATH = "cloud.app:build_app"
CLOUD_DEPLOYMENT_NAME = "InferenceDeployment"
DEFAULT_CLOUD_GRPC_PORT = 9000
# Requests Serve itself holds for busy replicas before its proxy answers with backpressure.
CLOUD_SERVE_MAX_QUEUED_REQUESTS = 64
# After an answer's first message, a cloud replica streams at most one message per this interval.
CLOUD_STREAM_INTERVAL_MS = 20.0
# Ray's proxy does not serve grpc.health.v1 by itself; the deployment answers it (see cloud/app.py).
CLOUD_GRPC_SERVICER_FUNCTIONS = (
    "cloud.grpc_servicers.add_inference_servicer",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
)

# --- What replicas measure for the router ---
# Replicas report the mean time to first token of the requests that started within this window.
RECENT_TTFT_WINDOW_S = 5.0
# Every replica (edge agent, cloud replica) times its decode steps at one row and at PACE_ROWS rows (its
# batch size if smaller) when it starts, with requests of this prompt and length, so that the router knows
# how its pace falls as its batch fills before real traffic shows it. A CPU's step grows about linearly
# with the rows (SmolLM2-135M int8 on 2 cores: 25 ms at 1 row, 97 at 8, 343 at 32), so two sizes draw the
# line; a full batch of 32 would take seconds to time.
PACE_PROMPT = "Count from one to ten: one, two, three,"
PACE_ROWS = 8
PACE_TOKENS = 6

# --- Bench (`hybrid bench overload`, issue 5) ---
# WAN emulation on loopback: round-trip time a delaying TCP proxy adds in front of each tier.
BENCH_EDGE_RTT_MS = 5.0
BENCH_PRIVATE_RTT_MS = 40.0
BENCH_PUBLIC_RTT_MS = 80.0
# Assumed prices per replica-hour, for cost per million tokens: a small regional node, a reserved
# private GPU, and public capacity bought cheapest per token (spot / preemptible).
BENCH_EDGE_COST_PER_HOUR = 0.10
BENCH_PRIVATE_COST_PER_HOUR = 2.50
BENCH_PUBLIC_COST_PER_HOUR = 1.20
# The default workload: steady rate, burst multiplier and phase lengths (steady -> burst -> steady).
BENCH_STEADY_RPS = 2.0
BENCH_BURST_MULTIPLIER = 5.0
BENCH_STEADY_S = 20.0
BENCH_BURST_S = 20.0
BENCH_RECOVERY_S = 20.0
# Client-side deadline of each class, seconds.
BENCH_REALTIME_DEADLINE_S = 2.0
BENCH_INTERACTIVE_DEADLINE_S = 10.0
BENCH_BATCH_DEADLINE_S = 60.0
# Pause between the configurations of one run, so queues left by one do not land on the next.
BENCH_COOLDOWN_S = 5.0
