#!/usr/bin/env bash
# Rerun every benchmark run that is missing, then regenerate docs/BENCHMARKS.md and
# docs/benchmarks.json. Every step is resumable: rerun after an interruption.
#
#     bash bench/run_baselines.sh
#
# ESTIMATE from short probes (1 thread): the baselines need ~13 CPU-hours, ~12 of them the five
# MORLHF runs (200 GRPO steps x ~44 CPU-s each), so most of a night on 2 cores. CPU-seconds
# are the cost figure compared, so run with the same OMP_NUM_THREADS as RiC's own runs.
#
# RiC's own runs (train/*.py) come first when their outputs are missing; then the baselines
# (bench/fronts.py: Rewarded Soups, MORLHF, prompt-only, base), the throughput benchmark, and
# the report. Set RIC_ONLINE=0 to skip RiC's online (MORS) stage.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
RUNS=runs
R=train/recipes

step() { echo; echo "== $*"; }

if [ ! -f "$RUNS/data/dataset.jsonl" ]; then
    step "offline data"; python train/prepare_dataset.py --config "$R/cpu_data.yaml"
fi
if [ ! -f "$RUNS/sft/train_log.json" ]; then
    step "RiC offline SFT"; python train/sft.py --config "$R/cpu_sft.yaml"
fi
if [ ! -f "$RUNS/eval_sft/front.json" ]; then
    step "RiC offline front"; python train/evaluate.py --adapter "$RUNS/sft/adapter" --out "$RUNS/eval_sft"
fi
if [ ! -f "$RUNS/eval_base/front.json" ]; then
    step "base model point"; python train/evaluate.py --adapter "$RUNS/sft/adapter" --base true --out "$RUNS/eval_base"
fi
if [ "${RIC_ONLINE:-1}" = 1 ]; then
    if [ ! -d "$RUNS/online/adapter" ]; then
        step "RiC online (MORS)"; python train/online.py --config "$R/cpu_online.yaml"
    fi
    if [ ! -f "$RUNS/eval_online/front.json" ]; then
        step "RiC online front"; python train/evaluate.py --adapter "$RUNS/online/adapter" --out "$RUNS/eval_online"
    fi
fi

step "baselines: Rewarded Soups, MORLHF, prompt-only (train what is missing, evaluate)"
python bench/fronts.py --runs "$RUNS"

if [ ! -f "$RUNS/bench/throughput.json" ]; then
    step "throughput"; python bench/throughput.py --out "$RUNS/bench/throughput.json"
fi

step "report"
python bench/fronts.py --report-only --runs "$RUNS"
