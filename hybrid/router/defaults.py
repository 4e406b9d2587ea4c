"""The router's defaults: its server, its routing policy, hotness, outlier ejection and the scaling signal.
Change them here."""

from __future__ import annotations

# --- Router server ---
# How often the router asks every replica for its load (and measures the round trip).
ROUTER_LOAD_POLL_S = 0.5
ROUTER_LOAD_TIMEOUT_S = 2.0
# How often the view closes what finished leaving discovery and checks that replicas with calls open live.
ROUTER_TICK_S = 0.1
# A replica with calls open that has sent nothing (no chunk, no load report) for this long is frozen:
# it is ejected and its calls are ended, so that those without a first token are sent elsewhere.
ROUTER_STALL_S = 1.5
# Replicas one request may be sent to: it is resent only when a replica fails before its first token.
ROUTER_MAX_ATTEMPTS = 3
# How long a starting router waits for discovery's first answer before it serves anyway.
ROUTER_DISCOVERY_WAIT_S = 10.0

# --- Routing ---
# What a request without a deadline may wait at most before its tier counts as full.
ROUTING_DEFAULT_BUDGET_MS = 30_000.0
# Assumed duration of one request on a replica that has not reported its own yet.
ROUTING_DEFAULT_REQUEST_MS = 1_000.0
# A REALTIME request tries the tiers nearest first, by measured round trip; tiers whose round trips differ by less
# than this are equally near (a loopback's or one site's jitter must not reorder them) and keep the table's order.
ROUTING_NEAREST_BAND_MS = 5.0
# How near a replica is comes from its fastest load polls: a slower poll moves that floor up by this share of the
# gap (at a poll each 0.5 s, a lasting change is 90% followed in about two minutes).
ROUTING_DISTANCE_RISE = 0.01
# A REALTIME request goes to the nearest tier expected to give its first token within this (less the
# headroom below); where none is, to the replica of any tier whose first token is expected soonest.
ROUTING_REALTIME_TTFT_MS = 250.0
# That target is for nearly every request (a 99th percentile) while replicas report their 90th percentile,
# so a replica meets it when its predicted first token is within this fraction of the target.
ROUTING_TTFT_HEADROOM = 0.8
# A request goes first to a replica expected to finish it within this fraction of its remaining deadline
# (the rest is margin for a guess), then to one expected to finish it within the deadline itself.
ROUTING_DEADLINE_HEADROOM = 0.5
# The router remembers what a token took in its calls to each replica over this window.
ROUTING_RECENT_WINDOW_S = 10.0
# The retry hint given with RESOURCE_EXHAUSTED when no replica at all could take the request.
ROUTING_NO_REPLICA_RETRY_AFTER_MS = 1_000

# --- Hotness ---
# A key is hot after HOT_COUNT requests within the window.
HOTNESS_WINDOW_S = 60.0
HOTNESS_BUCKETS = 6
# Keys tracked per bucket (Space-Saving capacity): bounds memory whatever the traffic.
HOTNESS_CAPACITY = 256
HOT_COUNT = 3
# Characters of a prompt that identify its prefix when no affinity_key is given.
HOTNESS_PREFIX_CHARS = 64
# Bytes of the hash that stands for a key in the sketch: the key itself is never kept.
HOTNESS_DIGEST_BYTES = 8

# --- Outlier ejection, in the manner of Envoy's ---
OUTLIER_MAX_FAILURES = 5
OUTLIER_BASE_EJECTION_S = 30.0
OUTLIER_MAX_EJECTION_S = 300.0
OUTLIER_MAX_EJECTED_FRACTION = 0.5
# A replica neither ejected nor failing for max(this, the base ejection) starts its back-off afresh.
OUTLIER_HEALTHY_RESET_S = 30.0

# --- Scaling signal (hybrid.router.scaling) ---
# Holt's smoothing of each tier's arrivals a second: the level follows a burst within a few seconds, the
# slope within several, and one noisy second moves neither much.
SCALING_LEVEL_ALPHA = 0.3
SCALING_TREND_BETA = 0.2
# About the time a new replica takes to start serving: how far ahead the arrival rate is forecast.
SCALING_HORIZON_S = 15.0
# Share of a replica's slots the desired count plans to fill.
SCALING_TARGET_UTILIZATION = 0.8
# Spillovers for want of room, refusals and deadline misses this recent ask for one more replica.
SCALING_PRESSURE_WINDOW_S = 10.0
# Below this many requests a second a tier's forecast is idle: smoothing only ever approaches zero, and a
# tier that saw no request for minutes may scale to zero where its autoscaler allows it.
SCALING_IDLE_PER_S = 0.01
