#!/bin/bash
# Refinetunes the uniform and searched policies of the resnet20_lite_flip pipeline run
# (docs/RESULTS.md) for 3 epochs instead of 1 — same pretraining, indicators, policies,
# images (--subset-seed 55930 is the pipeline's training subset) and recipe otherwise — and
# evaluates each model on all 10,000 test images.
#   docs/results/resnet20_lite_flip/finetune3.sh RUN OUT BUDGET SEED...
#   e.g. ... runs/resnet20_lite_flip runs/ft3 w2a3 0 1 2 3 4 5 6 7 8 9
# KINDS="random0 random1 random2" does the random policies instead.
# Prints "RESULT BUDGET seedS KIND accuracy A%" per model; a model already done is skipped.
set -euo pipefail
LIMPQ=${LIMPQ:-target/release/limpq}
R=$1 OUT=$2 B=$3
shift 3
for S in "$@"; do
  mkdir -p "$OUT/seed$S"
  for K in ${KINDS:-uniform searched}; do
    o=$OUT/seed$S/${B}_$K.ckpt
    [ -f "$o.done" ] && { cat "$o.done"; continue; }
    "$LIMPQ" finetune --init "$R/seed$S/pretrain.ckpt" --policy "$R/seed$S/policies/${B}_$K.ron" \
      --indicators "$R/seed$S/indicators.ron" --epochs 3 --batch 32 --lr 0.01 --subset 1024 \
      --subset-seed 55930 --test-subset 1000 --seed "$S" -o "$o"
    acc=$("$LIMPQ" eval --ckpt "$o" 2>&1 | grep -o "accuracy [0-9.]*%")
    echo "RESULT $B seed$S $K $acc" | tee "$o.done"
  done
done
