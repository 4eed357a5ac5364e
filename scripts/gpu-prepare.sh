#!/usr/bin/env bash
# Prepares, in the project root, everything a call on the device machine carries (the
# working tree and the carried paths: 64 MiB in all):
#   .gl/        the Vulkan loader, gpu-env.sh (which points the loader at the machine's
#               driver) and, optionally, the PyTorch peer benchmark scripts. limpq does not
#               ship these: LIMPQ_GPU_PREPARE names an executable of yours that fills .gl/
#               with them (docs/PERFORMANCE.md, "How to measure on the H200"); without it,
#               .gl/ must already hold gpu-env.sh. Then .gl/limpq: the release binary, stripped
#   .data/      Fashion-MNIST
# The release profile keeps line tables for profiling (debug = 1), which makes
# target/release/limpq ~80 MB: over the carry limit on its own. Stripped it is ~12 MB.
# Then call the device with carry [".gl", ".data"] and, e.g.,
#   source .gl/gpu-env.sh; bash scripts/gpu-measure.sh --epochs 12
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
if [ -n "${LIMPQ_GPU_PREPARE:-}" ]; then
  "$LIMPQ_GPU_PREPARE" >/dev/null
fi
if [ ! -f .gl/gpu-env.sh ]; then
  echo "gpu-prepare: .gl/gpu-env.sh not found (set LIMPQ_GPU_PREPARE to a script that fills .gl/)" >&2
  exit 2
fi
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
