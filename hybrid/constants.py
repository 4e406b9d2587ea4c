"""Defaults the core shares: request limits, batching, the model, discovery and the stack's servers.

A tier's own defaults live with it (``edge_agent.defaults``, ``cloud.defaults``), the bench's in
``hybrid.bench.defaults``.
"""

from __future__ import annotations

import os
from pathlib import Path

# --- Batching ---
MAX_BATCH_SIZE = 32
MAX_BATCH_WAIT_MS = 50.0
# Requests held waiting for a batch slot before new ones get RESOURCE_EXHAUSTED.
MAX_QUEUED_REQUESTS = 256
# Chunks of one answer left unread before a replica stops it: its client stopped reading.
MAX_UNREAD_CHUNKS = 256
# Floor of the retry hint given with RESOURCE_EXHAUSTED.
MIN_RETRY_AFTER_MS = 100

# --- Requests ---
DEFAULT_MAX_NEW_TOKENS = 128
MAX_NEW_TOKENS_LIMIT = 4096
MAX_PROMPT_CHARS = 64_000
# Largest request message a server reads: a valid one (prompt, messages, stop strings, ids) stays well below.
MAX_REQUEST_BYTES = 1 << 20
MAX_STOP_STRINGS = 8
# Identifiers and strings a request carries: echoed into every chunk or held by the router, so bounded.
MAX_STOP_STRING_CHARS = 256
MAX_REQUEST_ID_CHARS = 128
MAX_AFFINITY_KEY_CHARS = 256
MAX_CLIENT_REGION_CHARS = 64
MAX_MODEL_NAME_CHARS = 256
MAX_TEMPERATURE = 2.0

# --- Models ---
DEFAULT_MODEL = "smollm2-135m"
CACHE_DIR = Path(os.environ.get("HYBRID_CACHE_DIR", Path.home() / ".cache" / "hybrid"))

# --- Discovery ---
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
# The cloud tier's Serve gRPC proxy: `hybrid up` and `hybrid cloud serve` put it here.
DEFAULT_CLOUD_GRPC_PORT = 9000
DEFAULT_ROUTER_PORT = 50051
DEFAULT_REGION = "local"
# Seconds a draining server waits for streams in flight before it stops.
DRAIN_GRACE_S = 30.0
# The router's OpenAI-compatible HTTP front.
DEFAULT_ROUTER_HTTP_PORT = 8080

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
