#!/bin/bash
# Do the indicators know which layers matter? (docs/RESULTS.md). From the project root:
#   bash docs/results/indicator_probe/probe.sh
# Runs the seed-0 pipeline with the sensitivity control, a joint run four times longer,
# a second sensitivity measurement (512 other calibration images), and the scale probe:
# one conv's weights times 4 with its batch norm compensated (same function), then the
# joint run and the sensitivity measurement again. Prints every comparison. Needs numpy
# and safetensors for scripts/scale_probe.py (PY, default python3). ~25 min on the
# software adapter of a 2-core machine.
set -euo pipefail
L=${LIMPQ:-target/release/limpq}
PY=${PY:-python3}
M=examples/resnet20_lite.model.ron
R=runs/indicator_probe
S=$R/seed0
O=$R/probe
mkdir -p "$O"
"$L" pipeline docs/results/indicator_probe/job.ron
# The pipeline's joint stage, by hand (it reproduces $S/indicators.ron), four times longer.
J="--bits 2,3,4,5,6 --batch 32 --lr 0.01 --subset 1024 --subset-seed 55930 --test-subset 1000 --seed 0"
[ -f "$O/indicators_e8.ron" ] || "$L" indicators --model $M --ckpt $S/pretrain.ckpt $J --epochs 8 -o "$O/indicators_e8.ron"
[ -f "$O/sensitivity_512.ron" ] || "$L" sensitivity --model $M --init $S/pretrain.ckpt --images 512 --seed 0 -o "$O/sensitivity_512.ron"
# The scale probe on layer3.1.conv1 (W2 in every searched policy of seed 0).
"$L" export $S/pretrain.ckpt --safetensors "$O/fp.safetensors"
"$PY" scripts/scale_probe.py "$O/fp.safetensors" "$O/scaled.safetensors" layer3.1.conv1 layer3.1.bn1 4
"$L" import-safetensors "$O/scaled.safetensors" --model $M --data fashion-mnist -o "$O/scaled.ckpt"
"$L" eval --ckpt $S/pretrain.ckpt --test-subset 1000
"$L" eval --ckpt "$O/scaled.ckpt" --test-subset 1000
[ -f "$O/indicators_e2_scaled.ron" ] || "$L" indicators --model $M --ckpt "$O/scaled.ckpt" $J --epochs 2 -o "$O/indicators_e2_scaled.ron"
[ -f "$O/sensitivity_512_scaled.ron" ] || "$L" sensitivity --model $M --init "$O/scaled.ckpt" --images 512 --seed 0 -o "$O/sensitivity_512_scaled.ron"
for pair in "$S/indicators.ron $S/sensitivity.ron" "$O/indicators_e8.ron $S/sensitivity.ron" \
  "$S/indicators.ron $O/sensitivity_512.ron" "$O/indicators_e8.ron $O/sensitivity_512.ron" \
  "$O/sensitivity_512.ron $S/sensitivity.ron" "$S/indicators.ron $O/indicators_e8.ron" \
  "$O/sensitivity_512.ron $O/sensitivity_512_scaled.ron"; do
  echo "== limpq compare $pair"
  "$L" compare $pair
done
for b in w2a3 w3a3 w4a4; do
  for f in $S/indicators.ron "$O/indicators_e2_scaled.ron"; do
    echo "== limpq solve $f --bitops $b --alpha 2"
    "$L" solve "$f" --bitops $b --alpha 2 | grep -E "^layer|^objective"
  done
done
