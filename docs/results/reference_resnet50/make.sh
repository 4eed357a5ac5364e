#!/usr/bin/env bash
# The LIMPQ authors' published ResNet-50 indicators (ImageNet), converted and searched the
# way their code searches them; README.md beside this script says what each file is.
# Run from the repository root after `cargo build --release`.
set -euo pipefail
L=${L:-target/release/limpq}
D=docs/results/reference_resnet50
P=$D/importance_indicators_resnet50.pkl

# Our counting (the built-in torchvision ResNet-50 table): the file in the benchmark.
$L import-limpq $P --layers resnet50 -o $D/reference_resnet50.indicators.ron

# The reference's counting (stride-2 convs at its float output size), its budgets, its answer.
$L layers resnet50 --format json | python3 $D/reference_counting.py > $D/reference_counting.csv
$L import-limpq $P --layers $D/reference_counting.csv --model resnet50 -o /tmp/reference_counting.ron
$L solve /tmp/reference_counting.ron --bitops w3a4 --size cr:12.2 -o /tmp/reference_w3a4.policy.ron

# The same budgets under our counting.
$L solve $D/reference_resnet50.indicators.ron --bitops w3a4 --size cr:12.2
