#!/usr/bin/env bash
# `hybrid bench overload` on a GPU machine without Ray or the model's weights, as recorded in
# docs/benchmarks.md. The image lacks Ray and matplotlib, and the model's weights do not fit the carry
# limit, so:
#   .device/site.tar.xz, .device/plot.tar.xz  ray[serve]==2.60.0 and matplotlib for CPython 3.12
#                                             (wheels unpacked into a tarball beforehand), unpacked to /tmp/site;
#   /tmp/chunks/edge-int8.part*               the int8 edge artifact as an xz tarball, split to fit the
#                                             carry limit and carried over earlier calls;
#   the cloud tier                            the same model's shape with random weights (its config and
#                                             tokenizer come from the artifact): real speed, noise answers.
# Usage (on the device, repository root): bash benchmarks/overload_gpu.sh OUT [hybrid bench overload flags]
set -euo pipefail
out=$1; shift
mkdir -p /tmp/site /tmp/artifacts /tmp/models/smollm2-135m
[ -d /tmp/site/ray ] || { tar xJf .device/site.tar.xz -C /tmp/site && tar xJf .device/plot.tar.xz -C /tmp/site; }
find /tmp/site/ray -path '*core/src*' -type f -exec chmod +x {} +
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH RAY_USAGE_STATS_ENABLED=0
# The image's grpcio is 1.84; the committed stubs ask for the 1.85 that generated them.
sed -i 's/^GRPC_GENERATED_VERSION = .*/GRPC_GENERATED_VERSION = "1.84.0"/' hybrid/v1/*_pb2_grpc.py
artifact=$(ls -d /tmp/artifacts/smollm2-135m-int8-* 2>/dev/null | head -1 || true)
if [ -z "$artifact" ]; then
  cat /tmp/chunks/edge-int8.part* | xz -dc | tar xf - -C /tmp/artifacts
  artifact=$(ls -d /tmp/artifacts/smollm2-135m-int8-* | head -1)
fi
for f in config.json generation_config.json tokenizer.json tokenizer_config.json special_tokens_map.json chat_template.jinja; do
  cp "$artifact/$f" /tmp/models/smollm2-135m/
done
python -m hybrid.cli bench overload --artifact "$artifact" --cloud-model /tmp/models/smollm2-135m \
  --cloud-random-weights --out "$out" "$@"
