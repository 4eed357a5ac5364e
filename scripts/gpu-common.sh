# Sourced by scripts/gpu-measure.sh and scripts/gpu-pipeline.sh (not run on its own), after
# they set OUT.

# gpu_bin: the limpq binary to run — $LIMPQ_BIN, else the stripped .gl/limpq that
# scripts/gpu-prepare.sh makes (the one that fits the device machine's carry limit), else
# target/release/limpq. A .gl/limpq older than a local release build is refused: it would
# measure old code (rerun scripts/gpu-prepare.sh).
gpu_bin() {
  if [ -n "${LIMPQ_BIN:-}" ]; then echo "$LIMPQ_BIN"; return; fi
  if [ -x .gl/limpq ]; then
    if [ -e target/release/limpq ] && [ target/release/limpq -nt .gl/limpq ]; then
      echo "gpu: .gl/limpq is older than target/release/limpq: run scripts/gpu-prepare.sh" >&2
      return 1
    fi
    echo .gl/limpq
  else
    echo target/release/limpq
  fi
}

# gpu_env QUICK: set up the Vulkan loader of .gl/ unless that was done (the documented
# command sources gpu-env.sh itself) or this is a quick dry run (gpu-env.sh unpacks
# packages into /, which only the device machine wants).
gpu_env() {
  if [ -z "$1" ] && [ -z "${VK_DRIVER_FILES:-}" ] && [ -f .gl/gpu-env.sh ]; then
    # shellcheck disable=SC1091
    source .gl/gpu-env.sh
  fi
}

# summary LINE...: print LINE and append it to $OUT/summary.txt.
summary() { echo "$*" | tee -a "$OUT/summary.txt"; }

# gpu_header TITLE: start $OUT/summary.txt with TITLE, the commit and binary ($bin), and the
# GPU as nvidia-smi names it (where there is one).
gpu_header() {
  : > "$OUT/summary.txt"
  summary "$1"
  summary "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); binary $bin"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 \
      | tee -a "$OUT/summary.txt"
  fi
}
