#!/usr/bin/env bash
# The method comparison in benchmarks/results.md: every method, tuned with the same budget (method.lr on a
# validation split carved from the retain set), then 3 seeds, class-wise and sample-wise, on the digits demo
# model. 33 minutes on this 2-core machine with OMP_NUM_THREADS=1 (nothing else running on its thread). Run from the
# repository root: bash benchmarks/results.sh [OUT]
set -euo pipefail
out=${1:-results}
orthograd demo --quiet --json > /dev/null   # builds ~/.cache/orthograd/demo/digits and the checkpoint
data=${ORTHOGRAD_CACHE:-$HOME/.cache/orthograd}/demo/digits
methods=orthograd,finetune,neggrad,neggrad_plus,random_label,scrub,salun,gdr_gma
for mode in class sample; do
  folder=$data/$([ $mode = class ] && echo class7 || echo sample)
  orthograd compare "$data/resnet18_digits_seed0.safetensors" --forget "$folder/forget.csv" \
    --retain "$folder/retain.csv" --test "$data/test.csv" --recipe resnet18_digits_$mode \
    --methods $methods --sweep method.lr=0.01,0.03,0.1 --seeds 3 --out "$out/$mode" --quiet
done
