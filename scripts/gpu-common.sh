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

# gpu_pack NAME: the device machine returns at most 8 files from $OUT, 16 MiB each, none
# deeper than $OUT/a/b/file (../.library/device/README.md, "Limits"); a run's logs, JSON
# lines and checkpoints are more than that. So everything under $OUT except summary.txt and
# the *.tar.gz already there goes into $OUT/NAME.tar.gz and is removed; summary.txt says
# what was packed and warns when a file would not come back.
gpu_pack() {
  local name=$1 items=() f
  for f in "$OUT"/* "$OUT"/.[!.]*; do
    [ -e "$f" ] || continue
    case "$(basename "$f")" in summary.txt|*.tar.gz) ;; *) items+=("$(basename "$f")") ;; esac
  done
  if [ ${#items[@]} -gt 0 ]; then
    tar czf "$OUT/$name.tar.gz" -C "$OUT" "${items[@]}" && (cd "$OUT" && rm -rf "${items[@]}")
    summary "packed ${items[*]} into $name.tar.gz ($(du -h "$OUT/$name.tar.gz" | cut -f1))"
  fi
  local n=0
  for f in "$OUT"/*; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    if [ "$(stat -c %s "$f")" -gt $((16 * 1024 * 1024)) ]; then
      summary "WARNING $(basename "$f") is over 16 MiB: it will not come back from the device"
    fi
  done
  [ "$n" -gt 8 ] && summary "WARNING $n files in $OUT: only 8 come back from the device"
  return 0
}
