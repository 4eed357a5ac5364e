#!/usr/bin/env bash
# A ResNet-50 indicator file written by our own commands (docs/PERFORMANCE.md): the
# torchvision ResNet-50 graph at 64×64 input with a 10-class head
# (resnet50_64.model.ron: `limpq layers resnet50 --description` with its input and
# classifier changed), trained one epoch in full precision on 256 Fashion-MNIST images
# (an image folder, upscaled and turned RGB by the loader), then one epoch of joint LSQ
# training on 64 images (2 steps). On the software adapter of a 2-core machine the two
# commands took 467 s and 782 s. The model is NOT a trained one (train loss 15.5, 14 % on
# 64 test images): its weights are near their init, so its weight indicators follow each
# layer's fan-in. Run from the repository root.
set -euo pipefail
L=${L:-target/release/limpq}
D=docs/results/resnet50_64
F=${F:-/tmp/limpq-fm-folder}
python3 scripts/fmnist-folder.py "$F" --train 100 --val 20
$L train --model $D/resnet50_64.model.ron --data folder --data-dir "$F" --subset 256 \
  --test-subset 64 --epochs 1 --batch 32 --lr 0.02 --nesterov -o /tmp/resnet50_64.fp.ckpt
$L indicators --model $D/resnet50_64.model.ron --data folder --data-dir "$F" \
  --ckpt /tmp/resnet50_64.fp.ckpt --bits 2,3,4,5,6 --subset 64 --test-subset 32 \
  --epochs 1 --batch 32 -o $D/resnet50_64.indicators.ron
cargo run --release -p limpq-solver --features microlp,serde --example bench -- \
  --microlp-budget 0 $D/resnet50_64.indicators.ron
