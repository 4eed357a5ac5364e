#!/usr/bin/env bash
# A trained ResNet-50 indicator file (docs/PERFORMANCE.md, solver section): the same
# ResNet-50 at 64×64 as ../resnet50_64 (torchvision's graph with its input and classifier
# changed), but trained on a GPU instead of left near its init: full-precision training on
# Fashion-MNIST (an image folder, upscaled to 64×64 and turned RGB by the loader), then the
# joint LSQ training that learns the indicators. The run fits a time budget: it first times
# a full-precision and a joint step, then gives each stage as many epochs (or images) as
# its share of the budget holds, so the same script serves a fast GPU and a slow one.
#
#   BUDGET_S=480 bash docs/results/resnet50_64_trained/make.sh      # from the repository root
#
# Knobs (environment): L (the limpq binary), BUDGET_S (seconds for the whole script),
# PER_CLASS / VAL (training / test images per class written to the folder), FP_BATCH,
# JOINT_BATCH, MODEL (another model file, e.g. small_cnn for a dry run), IDX (the folder
# holding Fashion-MNIST's IDX files), F (where the image folder goes), OUT (where the
# indicator file, the logs and summary.txt go; default this folder).
# The files beside this script come from one run on an NVIDIA H100 (Vulkan, driver
# 580.159.04), `L=.gl/limpq BUDGET_S=530 OUT=$OUT bash docs/results/resnet50_64_trained/make.sh`
# with the release binary of 0dcb503: summary.txt (the stages, their epochs and
# times), devices.log, bench.jsonl (the two timed steps), train.log, indicators.log and
# resnet50_64_trained.raw.indicators.ron, the file as that build wrote it. It stored three
# weight step sizes below zero, which the solver refuses; the build of cbcb331 and later
# writes them as 1e-5, the step the quantizer used (docs/METHOD.md), and
# `python3 clamp.py resnet50_64_trained.raw.indicators.ron > resnet50_64_trained.indicators.ron`
# writes the file that build would have written. That file is in the solver's bench:
#   cargo run --release -p limpq-solver --features microlp,serde --example bench -- \
#     --microlp-budget 0 docs/results/resnet50_64_trained/resnet50_64_trained.indicators.ron
# Each stage runs under `timeout`; train writes its checkpoint after every epoch, so a
# stage cut short keeps its finished epochs. The exit status is 1 if a stage failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
L=${L:-target/release/limpq}
BUDGET_S=${BUDGET_S:-480}
PER_CLASS=${PER_CLASS:-3000}
VAL=${VAL:-100}
FP_BATCH=${FP_BATCH:-128}
JOINT_BATCH=${JOINT_BATCH:-64}
MODEL=${MODEL:-docs/results/resnet50_64/resnet50_64.model.ron}
IDX=${IDX:-${LIMPQ_DATA:+$LIMPQ_DATA/fashion-mnist}}
IDX=${IDX:-/usr/share/datasets/fashion-mnist}
F=${F:-/tmp/limpq-fm-folder-$PER_CLASS}
OUT=${OUT:-$here}
mkdir -p "$OUT"
S="$OUT/summary.txt"
: > "$S"
start=$(date +%s)
left() { echo $((BUDGET_S - ($(date +%s) - start))); }
say() { echo "[$(($(date +%s) - start)) s] $*" | tee -a "$S"; }
status=0

python3 scripts/fmnist-folder.py "$F" --idx "$IDX" --train "$PER_CLASS" --val "$VAL" \
  > "$OUT/folder.log" 2>&1 || { say "folder: failed"; exit 1; }
n_train=$((PER_CLASS * 10))
say "folder: $n_train training and $((VAL * 10)) test images at $F"
timeout 60 "$L" devices > "$OUT/devices.log" 2>&1
say "devices: $(grep -m1 -i 'gpu\|cpu' "$OUT/devices.log" | tr -s ' ')"

# One full-precision and one joint step, timed: the figures the stages are sized from.
step_ms() { # MODE BATCH STEPS -> median ms per step (empty on failure)
  timeout 120 "$L" bench train --model "$MODEL" --mode "$1" --batch "$2" --steps "$3" \
    --warmup 2 --format json 2>>"$OUT/bench.log" | tee -a "$OUT/bench.jsonl" \
    | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["step_ms_median"])' \
      2>>"$OUT/bench.log"
}
fp_ms=$(step_ms single "$FP_BATCH" 5)
joint_ms=$(step_ms joint "$JOINT_BATCH" 3)
say "step: full precision ${fp_ms:-failed} ms (batch $FP_BATCH), joint ${joint_ms:-failed} ms (batch $JOINT_BATCH)"
[ -n "$fp_ms" ] && [ -n "$joint_ms" ] || exit 1

# Images each stage can take in its share of what is left: 40% of nine tenths for full
# precision, then eight tenths of the rest for the joint stage (the remainder covers
# start-up, evaluation, the loader and writing; the joint stage writes its file only at
# its end, so it is sized with the larger margin).
plan() { # SECONDS MS BATCH -> "EPOCHS SUBSET"
  python3 -c '
import sys
secs, ms, batch, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
images = int(secs * 1000 / ms) * batch
if images >= n:
    print(images // n, n)
else:
    print(1, max(batch, images // batch * batch))
' "$@" "$n_train"
}
r=$(( $(left) * 9 / 10 ))
read -r fp_epochs fp_subset < <(plan $((r * 4 / 10)) "$fp_ms" "$FP_BATCH")
say "train: $fp_epochs epochs of $fp_subset images (batch $FP_BATCH)"
ckpt=/tmp/resnet50_64_trained.fp.ckpt
timeout $(( $(left) * 55 / 100 )) "$L" train --model "$MODEL" --data folder --data-dir "$F" \
  --subset "$fp_subset" --epochs "$fp_epochs" --batch "$FP_BATCH" --lr 0.1 --nesterov \
  --weight-decay 5e-4 --label-smoothing 0.1 -o "$ckpt" > "$OUT/train.log" 2>&1
rc=$?
say "train: exit $rc; $(grep -i 'epoch' "$OUT/train.log" | tail -1)"
[ -f "$ckpt" ] || exit 1
[ "$rc" = 0 ] || status=1

r=$(( $(left) * 8 / 10 ))
read -r j_epochs j_subset < <(plan "$r" "$joint_ms" "$JOINT_BATCH")
say "indicators: $j_epochs epochs of $j_subset images (batch $JOINT_BATCH)"
timeout $(( $(left) - 5 )) "$L" indicators --model "$MODEL" --data folder --data-dir "$F" \
  --ckpt "$ckpt" --bits 2,3,4,5,6 --subset "$j_subset" --epochs "$j_epochs" \
  --batch "$JOINT_BATCH" -o "$OUT/resnet50_64_trained.indicators.ron" > "$OUT/indicators.log" 2>&1
rc=$?
say "indicators: exit $rc; $(grep -i 'epoch' "$OUT/indicators.log" | tail -1)"
[ "$rc" = 0 ] || status=1
exit $status
