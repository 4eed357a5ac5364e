#!/usr/bin/env bash
# Prepares, in the project root, everything a call on the device machine carries
# (../shared/gpu/README.md; the carry limit is 64 MiB in all):
#   .gl/        Vulkan loader packages, gpu-env.sh and the PyTorch peer scripts
#               (../shared/gpu/prepare.sh), plus .gl/limpq: the release binary, stripped
#   .data/      Fashion-MNIST
# The release profile keeps line tables for profiling (debug = 1), which makes
# target/release/limpq ~80 MB: over the carry limit on its own. Stripped it is ~12 MB.
# Then call the device with carry [".gl", ".data"] and, e.g.,
#   source .gl/gpu-env.sh; bash scripts/gpu-measure.sh --epochs 12
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
shared=${LIMPQ_SHARED:-$root/../shared}
if [ ! -x "$shared/gpu/prepare.sh" ]; then
  echo "gpu-prepare: $shared/gpu/prepare.sh not found (set LIMPQ_SHARED to the shared folder)" >&2
  exit 2
fi
"$shared/gpu/prepare.sh" >/dev/null
cargo build --release -p limpq
strip -o .gl/limpq.tmp target/release/limpq
mv .gl/limpq.tmp .gl/limpq
total_k=$(du -sk .gl .data | awk '{s += $1} END {print s}')
limit_k=$((64 * 1024))
du -sh .gl .data
if [ "$total_k" -gt "$limit_k" ]; then
  echo "gpu-prepare: .gl + .data is ${total_k} KiB, over the ${limit_k} KiB carry limit" >&2
  exit 1
fi
echo "carry [\".gl\", \".data\"] (${total_k} KiB of ${limit_k}); start the command with: source .gl/gpu-env.sh;"
