"""Defaults the core shares: request limits, batching, the model, discovery and the stack's servers.

A tier's own defaults live with it (``edge_agent.defaults``, ``cloud.defaults``), the bench's in
``hybrid.bench.defaults``.
"""

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
MAX_TEMPERATURE = 2.0

# --- Models ---
DEFAULT_MODEL = "smollm2-135m"
CACHE_DIR = Path(os.environ.get("HYBRID_CACHE_DIR", Path.home() / ".cache" / "hybrid"))

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
# The cloud tier's Serve gRPC proxy: `hybrid up` and `hybrid cloud serve` put it here.
DEFAULT_CLOUD_GRPC_PORT = 9000
DEFAULT_ROUTER_PORT = 50051
DEFAULT_REGION = "local"
# Seconds a draining server waits for streams in flight before it stops.
DRAIN_GRACE_S = 30.0

# --- Router server ---
# How often the router asks every replica for its load (and measures the round trip).
ROUTER_LOAD_POLL_S = 0.5
ROUTER_LOAD_TIMEOUT_S = 2.0
# Replicas one request may be sent to: it is resent only when a replica fails before its first token.
ROUTER_MAX_ATTEMPTS = 3
# How long a starting router waits for discovery's first answer before it serves anyway.
ROUTER_DISCOVERY_WAIT_S = 10.0
DEFAULT_ROUTER_HTTP_PORT = 8080

# --- Routing (DESIGN "Tiers and routing") ---
# What a request without a deadline may wait at most before its tier counts as full.
ROUTING_DEFAULT_BUDGET_MS = 30_000.0
# Assumed duration of one request on a replica that has not reported its own yet.
ROUTING_DEFAULT_REQUEST_MS = 1_000.0
# A REALTIME request goes to the nearest tier expected to give its first token within this (less the
# headroom below); where none is, to the replica of any tier whose first token is expected soonest.
ROUTING_REALTIME_TTFT_MS = 250.0
# That target is for nearly every request (a 99th percentile) while replicas report their 90th percentile,
# so a replica meets it when its predicted first token is within this fraction of the target.
ROUTING_TTFT_HEADROOM = 0.8
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
# A request goes first to a replica expected to finish it within this fraction of its remaining deadline
# (the rest is margin for a guess), then to one that can at least start it in time.
ROUTING_DEADLINE_HEADROOM = 0.5
# The router remembers what a token took in its calls to each replica over this window.
ROUTING_RECENT_WINDOW_S = 10.0
# Hotness: a key is hot after HOT_COUNT requests within the window.
HOTNESS_WINDOW_S = 60.0
HOTNESS_BUCKETS = 6
# Keys tracked per bucket (Space-Saving capacity): bounds memory whatever the traffic.
HOTNESS_CAPACITY = 256
HOT_COUNT = 3
# Characters of a prompt that identify its prefix when no affinity_key is given.
HOTNESS_PREFIX_CHARS = 64
# Outlier ejection, in the manner of Envoy's.
OUTLIER_MAX_FAILURES = 5
OUTLIER_BASE_EJECTION_S = 30.0
OUTLIER_MAX_EJECTION_S = 300.0
OUTLIER_MAX_EJECTED_FRACTION = 0.5
