#!/usr/bin/env bash
# The edge agent's CUDA path on a GPU machine: the lean-int4-fp16 artifact on onnxruntime-gpu, batch 1 and 32,
# beside the cloud engine on the same GPU; then, where the model's weights have come too, the CUDA tests.
# benchmarks/gpu_setup.sh brings onnxruntime-gpu (ORT_GPU_SITE), the artifact (GPU_LEAN_ARTIFACT) and the model.
# Usage (on the device, repository root): bash benchmarks/edge_cuda_gpu.sh OUT
set -euo pipefail
out=$1
mkdir -p "$out"
source benchmarks/gpu_setup.sh
set -euo pipefail
[ -n "${ORT_GPU_SITE:-}" ] && [ -n "${GPU_LEAN_ARTIFACT:-}" ] || { echo "onnxruntime-gpu or the artifact has not come yet" >&2; exit 2; }
# onnxruntime-gpu finds CUDA 13's libraries by name; on this image they sit in the nvidia packages torch brought.
nvidia_libs=$(python - <<'EOF'
import glob, os, site
found = {os.path.dirname(p) for root in site.getsitepackages() for p in glob.glob(f"{root}/nvidia/**/lib*.so*", recursive=True)}
print(":".join(sorted(found)))
EOF
)
export LD_LIBRARY_PATH=${nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONPATH=$ORT_GPU_SITE:$PYTHONPATH
python -c "import onnxruntime as ort; print('onnxruntime', ort.__version__, ort.get_available_providers())"
python benchmarks/edge_decode.py --provider cuda --artifacts "$GPU_LEAN_ARTIFACT" --batches 1 32 \
  --skip transformers-fp32 llama.cpp-Q4_1 --repeats 3 --out "$out/edge_decode_h200.json" 2>&1 | tee "$out/edge_decode.log" | tail -8
python benchmarks/cloud_decode.py --shapes smollm2-135m --paths engine --batches 1,32 --prompt-tokens 64 \
  --new-tokens 64 --out "$out/cloud_h200.json" > "$out/cloud_decode.log" 2>&1 && tail -6 "$out/cloud_decode.log"
if [ -n "${GPU_MODEL_DIR:-}" ]; then
  HYBRID_TEST_GPU_ARTIFACT=$GPU_LEAN_ARTIFACT python -m pytest -m cuda tests/edge_agent/test_cuda.py -p no:cacheprovider -rA 2>&1 | tee "$out/pytest_cuda.log" | tail -15
fi
