#!/usr/bin/env bash
# The README's "Measured: fine-tuning, distillation, grid" runs, in order, from a fresh clone
# (after the README's setup; assets in ../shared/assets). One torch thread each; about 1.5 hours
# on a loaded 2-core VM. Outputs go to runs/ (git-ignored).
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
A=${BERTC_ASSETS:-../shared/assets}
M=$A/models/all-MiniLM-L6-v2
G=$A/glue
run() { echo "== $(date -u +%T) bertc $*"; /usr/bin/time -f "wall %e s" .venv/bin/bertc "$@"; echo "rc=$?"; }
run finetune $M --task mrpc --data-dir $G --out runs/minilm-l6-mrpc --epochs 2 --threads 1 --overwrite
run finetune $M --task rte --data-dir $G --out runs/minilm-l6-rte --epochs 2 --threads 1 --overwrite
run finetune $M --task cola --data-dir $G --out runs/minilm-l6-cola --max-steps 600 --threads 1 --overwrite
run finetune $M --task stsb --data-dir $G --out runs/minilm-l6-stsb --max-steps 200 --threads 1 --overwrite
run distill --teacher $A/models/minilm-l6-sst2 --student $M --student-layers 3 --task sst2 \
    --data-dir $G --out runs/minilm-l3-sst2-distilled --max-steps 500 --train-samples 8000 \
    --threads 1 --compare-alone --overwrite
for engine in in-process ray; do
    run finetune $M --task stsb --data-dir $G --out runs/grid-stsb-$engine --grid seed \
        --grid-batch-sizes 16,32 --grid-learning-rates 3e-4,1e-4 --max-steps 8 \
        --train-samples 256 --threads 1 --engine $engine --ray-cpus 1 --overwrite
done
for pair in "minilm-l6-mrpc mrpc" "minilm-l3-sst2-distilled sst2"; do
    set -- $pair
    run compile runs/$1 --task $2 --data-dir $G --target openvino --out runs/artifacts/$1-openvino --overwrite
    run verify runs/artifacts/$1-openvino --task $2 --data-dir $G --threads 1
done
