#!/usr/bin/env bash
# The whole-method measurement on the GPU device machine (docs/RESULTS.md): the whole method,
# `limpq pipeline`, on ResNet-20 and all of Fashion-MNIST (examples/resnet20.pipeline.ron:
# the PyTorch reference recipe), a seed or two per call: one call has ~10 minutes, three
# seeds need more. The run folder comes back packed as $OUT/run.tar.gz (the device returns
# at most 8 files of 16 MiB: the job runs with keep_finetuned: false, so the folder holds
# the FP32 checkpoints, indicators, policies and accuracies, ~3 MB a seed); saved here as
# runs/gpu-pipeline.tar.gz and carried into the next call, it is continued there (finished
# stages are skipped, the stage that was cut resumes at its exact step), so the seeds can
# be spread over calls and the last call reports them all. Logs: $OUT/logs.tar.gz.
#
# Usage (project root; prepare with scripts/gpu-prepare.sh, carry .gl and .data, and
# runs/gpu-pipeline.tar.gz when continuing):
#   source .gl/gpu-env.sh; bash scripts/gpu-pipeline.sh [--seeds 0] [--job JOB.ron]
#   LIMPQ_QUICK=1 bash scripts/gpu-pipeline.sh   # a tiny small_cnn job: a dry run on any
#                                                # adapter (lavapipe: ~1 minute)
# --seeds: the seeds this call runs (comma-separated; default 0) plus every seed already in
# the carried folder's job, so its report covers them all.
# Environment: OUT (default ./gpu-pipeline-out), LIMPQ_BIN (default .gl/limpq — refused
# when older than target/release/limpq — else target/release/limpq), BUDGET_S (default
# 540: at that point the pipeline is stopped like Ctrl-C, after its current step, keeping
# every finished stage and the position within the running one).
# Exit status: the pipeline's (0 when every stage of the asked seeds finished).
set -u -o pipefail

quick=${LIMPQ_QUICK:-}
seeds=0
job=examples/resnet20.pipeline.ron
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds=${2:?--seeds needs a value}; shift ;;
    --seeds=*) seeds=${1#--seeds=} ;;
    --job) job=${2:?--job needs a value}; shift ;;
    --job=*) job=${1#--job=} ;;
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$seeds" in ''|*[!0-9,]*) echo "--seeds takes comma-separated whole numbers, got '$seeds'" >&2; exit 2 ;; esac

start=$(date +%s)
budget=${BUDGET_S:-540}
OUT=${OUT:-$PWD/gpu-pipeline-out}
mkdir -p "$OUT"
# shellcheck source=scripts/gpu-common.sh
source "$(dirname "$0")/gpu-common.sh"
bin=$(gpu_bin) || exit 2
gpu_env "$quick"
# At the end (or a kill by the call's timeout): the run folder into run.tar.gz, the rest
# (logs, the job as run) into logs.tar.gz.
pack() {
  [ -d "$OUT/run" ] && tar czf "$OUT/run.tar.gz" -C "$OUT" run && rm -rf "$OUT/run" \
    && summary "packed the run folder into run.tar.gz ($(du -h "$OUT/run.tar.gz" | cut -f1))"
  gpu_pack logs
}
trap pack EXIT
trap 'exit 143' TERM INT

gpu_header "gpu-pipeline $(date -u +%Y-%m-%dT%H:%M:%SZ) quick=${quick:-0} budget=${budget}s"

if [ -n "$quick" ]; then
  job=$OUT/quick.pipeline.ron
  cat > "$job" <<'RON'
Job(
    model: "small_cnn",
    data: (name: "fashion-mnist", train: Some(256), test: Some(256)),
    seeds: [0],
    pretrain: (epochs: 3, batch: 32, lr: 0.1),
    joint: (bits: [2, 3, 4], epochs: 1, batch: 32, lr: 0.01),
    budgets: ["w2a3", "w3a3"],
    finetune: (epochs: 1, batch: 32, lr: 0.01),
    random_policies: 3,
    output: "unused",
)
RON
fi
[ -f "$job" ] || { summary "FAILED  no job file $job"; exit 2; }

# The job as run: the given one with keep_finetuned: false (no finetuned models in the
# folder that has to travel back).
run_job=$OUT/job.pipeline.ron
grep -v '^ *keep_finetuned:' "$job" | sed 's/^\( *\)output:/\1keep_finetuned: false,\n\1output:/' > "$run_job"
grep -q 'keep_finetuned: false' "$run_job" || { summary "FAILED  no 'output:' line in $job"; exit 2; }

# Continue a carried run: its folder becomes this call's, and its seeds stay in the report.
run=$OUT/run
if [ ! -e "$run" ]; then
  if [ -f runs/gpu-pipeline.tar.gz ]; then
    tar xzf runs/gpu-pipeline.tar.gz -C "$OUT"
    summary "continuing the carried runs/gpu-pipeline.tar.gz ($(du -sh "$run" | cut -f1))"
  elif [ -d runs/gpu-pipeline ]; then
    cp -a runs/gpu-pipeline "$run"
    summary "continuing the carried runs/gpu-pipeline ($(du -sh "$run" | cut -f1))"
  fi
fi
if [ -f "$run/job.ron" ]; then
  earlier=$(tr -d ' \n' < "$run/job.ron" | sed -n 's/.*seeds:\[\([0-9,]*\)\].*/\1/p' | tr -d ' ')
  [ -n "$earlier" ] && seeds=$(echo "$earlier,$seeds" | tr ',' '\n' | grep -v '^$' | awk '!s[$0]++' | paste -sd,)
fi
summary "job $job (run as $run_job), seeds $seeds, output $run"

left=$(( budget - ($(date +%s) - start) ))
[ "$left" -lt 30 ] && left=30
# SIGINT at the budget: the pipeline stops after its current step (like Ctrl-C) and keeps
# what it finished; KILL 60 s later if it has not.
timeout -s INT -k 60 "$left" "$bin" pipeline "$run_job" --out "$run" --seeds "$seeds" 2>&1 \
  | tee "$OUT/pipeline.log"
rc=$?
dt=$(( $(date +%s) - start ))
case $rc in
  0) summary "ok      pipeline (${dt}s)" ;;
  124|130|137) summary "STOPPED pipeline at the ${budget}s budget (rc=$rc, ${dt}s): continue it by saving run.tar.gz as runs/gpu-pipeline.tar.gz and carrying that" ;;
  *) summary "FAILED  pipeline rc=$rc (${dt}s)" ;;
esac
grep -E '^\[[0-9]+/[0-9]+\]' "$OUT/pipeline.log" >> "$OUT/summary.txt" || true
[ -f "$run/report.md" ] && [ $rc -eq 0 ] && cat "$run/report.md" >> "$OUT/summary.txt"
summary "run folder: $(du -sh "$run" 2>/dev/null | cut -f1)"
exit $rc
