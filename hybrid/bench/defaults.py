"""Defaults of `hybrid bench overload`: the emulated WAN, the assumed prices and the default workload."""

from __future__ import annotations

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
