#!/usr/bin/env bash
# Prepares, in the project root, everything a call on the device machine carries
# (../shared/gpu/README.md; the working tree and the carried paths: 64 MiB in all):
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
# What travels: the tracked (and untracked, not ignored) files plus the carried paths;
# a carried pipeline run (scripts/gpu-pipeline.sh) when there is one.
carry=(.gl .data)
[ -f runs/gpu-pipeline.tar.gz ] && carry+=(runs/gpu-pipeline.tar.gz)
tree_k=$(git ls-files -z --cached --others --exclude-standard \
  | du -ck --files0-from=- 2>/dev/null | awk 'END {print $1}')
total_k=$(( tree_k + $(du -sk "${carry[@]}" | awk '{s += $1} END {print s}') ))
limit_k=$((64 * 1024))
du -sh "${carry[@]}"
echo "working tree: ${tree_k} KiB"
if [ "$total_k" -gt "$limit_k" ]; then
  echo "gpu-prepare: working tree + ${carry[*]} is ${total_k} KiB, over the ${limit_k} KiB limit" >&2
  exit 1
fi
list=$(printf '"%s", ' "${carry[@]}")
echo "carry [${list%, }] (${total_k} KiB of ${limit_k} with the working tree); start the command with: source .gl/gpu-env.sh;"
