#!/usr/bin/env bash
# `hybrid bench overload` on a GPU machine, with the model's real weights on both tiers: the cloud
# replicas load the Hugging Face folder converted from the packaged GGUF, the edge agents the int8
# artifact made from the same model. benchmarks/gpu_setup.sh brings both (and Ray) to the machine.
# Where Ray sees two GPUs, the private and the public application take one each.
# Usage (on the device, repository root): bash benchmarks/overload_gpu.sh OUT [hybrid bench overload flags]
# EDGE=lean runs the edge agents on the lean-int4 artifact (GPU_EDGE_LEAN_ARTIFACT) instead of optimum's int8.
set -euo pipefail
out=$1; shift
source benchmarks/gpu_setup.sh
set -euo pipefail
edge_artifact=${GPU_EDGE_ARTIFACT:-}
[ "${EDGE:-}" = lean ] && edge_artifact=${GPU_EDGE_LEAN_ARTIFACT:-}
[ -n "${GPU_MODEL_DIR:-}" ] && [ -n "$edge_artifact" ] || { echo "the weights have not all come yet" >&2; exit 2; }
# What bounds the stack, sampled through the run beside the report: the busiest processes every 2 s (top.txt) and
# the GPU's use every second (gpu.csv).
mkdir -p "$out"
top -b -d 2 -w 220 -c -o %CPU | awk '/^top -/ { n = 0 } n++ < 40 { print; fflush() }' > "$out/top.txt" &
top_pid=$!
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 > "$out/gpu.csv" 2>/dev/null &
smi_pid=$!
trap 'kill "$top_pid" "$smi_pid" 2>/dev/null || true' EXIT
python -m hybrid.cli bench overload --artifact "$edge_artifact" --cloud-model "$GPU_MODEL_DIR" --out "$out" "$@"
