#!/usr/bin/env bash
# The ONE measurement run for the H200 device machine (see docs/PERFORMANCE.md, "How to measure on the H200"): our training-step bench and the PyTorch
# peer on the same GPU in the same run, the conv kernels per shape class (`bench conv`,
# conv.jsonl), one joint step with every conv forced to the direct kernel, a joint and an
# FP32 step with f16-operand forward convs (`--conv-algo f16gemm`), then a short
# full-precision accuracy run with what time is left. Everything goes to $OUT/: summary.txt,
# and measure.tar.gz with the logs, bench.jsonl, peer.jsonl, conv.jsonl and train.ckpt (the
# device machine returns at most 8 files).
#
# Usage (project root; prepare with scripts/gpu-prepare.sh, carry .gl and .data):
#   source .gl/gpu-env.sh; bash scripts/gpu-measure.sh [--quick] [--epochs E]
#   LIMPQ_QUICK=1 bash scripts/gpu-measure.sh     # tiny settings (small_cnn, 2 steps): a
#                                                 # dry run that works on lavapipe
# Environment: OUT (default ./gpu-measure-out), LIMPQ_BIN (default .gl/limpq — refused when
# older than target/release/limpq — else target/release/limpq), BUDGET_S (whole run,
# default 540 s; the accuracy run gets what is left of it), PEER (the PyTorch peer benchmark
# script, default .gl/torch_lsq_joint.py; it is not shipped with limpq, and the peer step
# is skipped when it is absent).
# One step failing or hanging (each runs under `timeout`) does not stop the others; the
# exit status is 1 if any step failed. No step's timeout reaches past BUDGET_S (a step is
# cut to the budget left, or skipped when under 10 s are left).
set -u -o pipefail

quick=${LIMPQ_QUICK:-}
epochs=12
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --epochs) epochs=${2:?--epochs needs a value}; shift ;;
    --epochs=*) epochs=${1#--epochs=} ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$epochs" in ''|*[!0-9]*) echo "--epochs must be a whole number, got '$epochs'" >&2; exit 2 ;; esac

start=$(date +%s)
budget=${BUDGET_S:-540}
OUT=${OUT:-$PWD/gpu-measure-out}
mkdir -p "$OUT"
# shellcheck source=scripts/gpu-common.sh
source "$(dirname "$0")/gpu-common.sh"
bin=$(gpu_bin) || exit 2
# What comes back from the device is at most 8 files: at the end (or a kill by the call's
# timeout), everything but summary.txt goes into measure.tar.gz.
trap 'gpu_pack measure' EXIT
trap 'exit 143' TERM INT
peer=${PEER:-.gl/torch_lsq_joint.py}
failed=0

gpu_env "$quick"

# step NAME SECONDS CMD...: run CMD under a timeout, stdout+stderr to $OUT/NAME.log and the
# terminal; note the outcome in summary.txt.
step() {
  local name=$1 secs=$2; shift 2
  local t0; t0=$(date +%s)
  local left=$(( budget - (t0 - start) ))
  if [ "$left" -lt 10 ]; then summary "skip    $name: only ${left}s of the ${budget}s budget left"; return; fi
  [ "$secs" -gt "$left" ] && secs=$left
  echo "== $name (timeout ${secs}s): $*" | tee "$OUT/$name.log"
  timeout -k 5 "$secs" "$@" 2>&1 | tee -a "$OUT/$name.log"
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then summary "ok      $name (${dt}s)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then summary "TIMEOUT $name after ${dt}s"; failed=1
  else summary "FAILED  $name rc=$rc (${dt}s)"; failed=1
  fi
}

# bench MODEL BATCH MODE SECONDS [ARGS...]: one `limpq bench train` JSON line into bench.jsonl.
bench() {
  local model=$1 batch=$2 mode=$3 secs=$4; shift 4
  local name="bench-$(basename "$model" .ron)-b$batch-$mode" prev=
  for a in "$@"; do [ "$prev" = --conv-algo ] && name="$name-$a"; prev=$a; done
  step "$name" "$secs" "$bin" bench train --model "$model" --batch "$batch" --mode "$mode" \
    --format json "$@"
  grep -h '^{' "$OUT/$name.log" >> "$OUT/bench.jsonl" || true
}

# conv MODEL BATCH SECONDS [ARGS...]: `limpq bench conv` (every distinct conv shape, every
# algorithm, CPU-checked then timed), its JSON lines into conv.jsonl.
conv() {
  local model=$1 batch=$2 secs=$3; shift 3
  local name="conv-$(basename "$model" .ron)-b$batch"
  step "$name" "$secs" "$bin" bench conv --model "$model" --batch "$batch" --format json "$@"
  grep -h '^{' "$OUT/$name.log" >> "$OUT/conv.jsonl" || true
}

: > "$OUT/bench.jsonl"; : > "$OUT/peer.jsonl"; : > "$OUT/conv.jsonl"
gpu_header "gpu-measure $(date -u +%Y-%m-%dT%H:%M:%SZ) quick=${quick:-0} epochs=$epochs budget=${budget}s"

step devices 30 "$bin" devices

if [ -n "$quick" ]; then
  step bench-gemm 60 "$bin" bench gemm --size 128 --kind all --iters 2 --warmup 1 --reps 1
  bench small_cnn 16 joint 60 --steps 2 --warmup 1
  bench small_cnn 16 single 60 --steps 2 --warmup 1
  bench small_cnn 16 single-quant 60 --steps 2 --warmup 1
  conv_runs=(small_cnn:4:60:--iters:1:--warmup:0:--reps:1)
  forced=(small_cnn 16 joint 60 --steps 2 --warmup 1 --conv-algo direct)
  half_runs=(small_cnn:16:joint:60:--steps:2:--warmup:1:--conv-algo:f16gemm)
  peer_args=(--only resnet20 --steps 2)
  peer_secs=60
else
  # GEMM TFLOP/s at 4096³: f32, f16 operands, tensor cores (target ≥ 150); CPU-checked first.
  step bench-gemm 90 "$bin" bench gemm --size 4096 --kind all --iters 10 --reps 10
  grep -E '^(f32|f16|coop)' "$OUT/bench-gemm.log" | sed 's/^/gemm    /' >> "$OUT/summary.txt" || true
  # Same models, batches, warmup (3) and timed steps (20) as the peer.
  bench resnet20 256 joint 75
  bench resnet20 256 single 40
  bench resnet20 256 single-quant 40
  bench resnet18 64 joint 100 --steps 10   # 10 timed steps: fits the timeout if slow
  bench resnet18 64 single 45
  bench resnet18 64 single-quant 45
  # Conv kernels per shape class (~40 s each; resnet18 with fewer samples: its stem's
  # per-weight reduction is slow), and one joint step with every conv forced to direct.
  conv_runs=(resnet20:256:40 resnet18:64:40:--iters:3:--reps:5)
  forced=(resnet20 256 joint 40 --conv-algo direct)
  # Steps with the forward convs on f16 operands (tensor cores where offered): the joint
  # step's quantized convs on exact integer codes, the FP32 step's on rounded values.
  # Against `joint` / `single` above: what f16 forward buys.
  half_runs=(resnet20:256:joint:40:--conv-algo:f16gemm resnet20:256:single:30:--conv-algo:f16gemm)
  peer_args=()
  peer_secs=150
fi

if [ ! -f "$peer" ]; then
  summary "skip    peer: no peer script at $peer (set PEER)"
elif python3 -c 'import torch' 2>/dev/null; then
  step peer "$peer_secs" python3 "$peer" "${peer_args[@]}"
  grep -h '^{' "$OUT/peer.log" >> "$OUT/peer.jsonl" || true
else
  summary "skip    peer: python3 has no torch here"
fi

# The f16 steps first (the tensor-core joint step is the one most likely to beat the peer),
# then the per-shape conv tables and the forced-direct step.
for run in "${half_runs[@]}"; do
  IFS=: read -r -a a <<< "$run"
  bench "${a[@]}"
done
for run in "${conv_runs[@]}"; do
  IFS=: read -r -a a <<< "$run"
  conv "${a[@]}"
done
bench "${forced[@]}"

# Conv kernels: per shape, the fastest f32 algorithm of each op against Auto's pick.
python3 - "$OUT/conv.jsonl" <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for t in [r for r in rows if r.get("bench") == "conv-total"]:
    print(f"conv    {t['model']} b{t['batch']}: {t['conv_layers']} convs, {t['distinct_shapes']} shapes; "
          f"per step auto {t['auto_ms_per_step']:.3f} ms, per-shape best {t['best_ms_per_step']:.3f} ms")
for r in rows:
    if r.get("bench") != "conv" or not r.get("fastest"):
        continue
    auto = next((a for a in rows if a.get("bench") == "conv" and a["model"] == r["model"]
                 and a["shape_id"] == r["shape_id"] and a["op"] == r["op"] and a.get("is_auto")), None)
    am = f"{auto['ms']:.4f}" if auto and "ms" in auto else "-"
    print(f"conv    {r['model']} #{r['shape_id']} {r['class']:<12} x{r['count']} {r['op']:<15} "
          f"best {r['algo']:<7} {r['ms']:.4f} ms {r['tflops']:.2f} TFLOP/s; auto {r['auto_pick']} {am} ms")
bad = [r for r in rows if "error" in r]
for r in bad:
    print(f"conv    FAILED {r['model']} #{r['shape_id']} {r['op']} {r['algo']}: {r['error']}")
PY

# Side by side (images/s, ms per step), from the JSON lines.
python3 - "$OUT/bench.jsonl" "$OUT/peer.jsonl" <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peer = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
pname = {"resnet20": "resnet20-28px", "resnet18": "resnet18-224px"}
print(f"{'model':<10} {'batch':>5} {'mode':<12} {'conv':<8} {'limpq ms':>9} {'limpq img/s':>11} {'torch ms':>9} {'torch img/s':>11} {'ratio':>6}")
for o in ours:
    p = next((p for p in peer if p["model"] == pname.get(o["model"]) and p["batch"] == o["batch"]), None)
    pm = p.get(o["mode"]) if p else None
    tm, ti = (f"{pm['step_ms']:.2f}", f"{pm['images_per_s']:.0f}") if pm else ("-", "-")
    ratio = f"{o['images_per_s'] / pm['images_per_s']:.2f}" if pm else "-"
    print(f"{o['model']:<10} {o['batch']:>5} {o['mode']:<12} {o.get('conv_algo', 'auto'):<8} {o['step_ms']:>9.2f} {o['images_per_s']:>11.0f} {tm:>9} {ti:>11} {ratio:>6}")
print("adapter:", ", ".join(sorted({o["device"] + " (" + o["backend"] + ")" for o in ours})) or "-")
PY

# Accuracy: full-precision ResNet-20 on Fashion-MNIST with the time left (the checkpoint
# and one line per epoch are written after every epoch, so a timeout keeps what finished).
left=$(( budget - ($(date +%s) - start) - 10 ))
if [ "$left" -lt 30 ]; then
  summary "skip    train: only ${left}s of the ${budget}s budget left"
else
  if [ -n "$quick" ]; then
    step train "$left" "$bin" train --model small_cnn --data fashion-mnist --epochs 1 \
      --subset 512 --test-subset 256 --batch 64 -o "$OUT/train.ckpt"
  else
    # The recipe of the PyTorch reference run that reached 93.42% in 12 epochs
    # (not shipped with limpq): batch 256, lr 0.1 cosine, Nesterov, weight decay 5e-4, label
    # smoothing 0.1.
    step train "$left" "$bin" train --model resnet20 --data fashion-mnist --epochs "$epochs" \
      --batch 256 --lr 0.1 --nesterov --weight-decay 5e-4 --label-smoothing 0.1 \
      -o "$OUT/train.ckpt"
  fi
  grep -h '^epoch [0-9]*/[0-9]*:' "$OUT/train.log" | tail -1 | sed 's/^/last    /' | tee -a "$OUT/summary.txt"
fi

summary "total $(( $(date +%s) - start ))s; failed=$failed"
exit $failed
