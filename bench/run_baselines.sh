#!/usr/bin/env bash
# Rerun every benchmark run that is missing, then regenerate docs/BENCHMARKS.md and
# docs/benchmarks.json. Every step is resumable: rerun after an interruption.
#
#     bash bench/run_baselines.sh
#
# MEASURED on 2 cores (2026-12-02): the five MORLHF runs took 3.67 CPU-hours (55 GRPO steps
# each, ~22-24 min wall per run, train/recipes/bench_morlhf.yaml), the Rewarded Soups
# ingredients 0.15 on top of RiC's data. CPU-seconds are the cost figure compared, so run with
# the same OMP_NUM_THREADS as RiC's own runs. In a fresh clone without runs/, see the
# --shipped line in bench/fronts.py's help.
#
# RiC's own runs come first when their fronts are missing: the exact build of the embedded
# default (train/run_default.sh: data, SFT, MORS, calibration, fronts); then the baselines
# (bench/fronts.py: Rewarded Soups, MORLHF, prompt-only, base), the throughput benchmark, and
# the report.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
RUNS=runs

step() { echo; echo "== $*"; }

if [ ! -f "$RUNS/eval_online2/front.json" ]; then
    step "RiC: the embedded default's full build (train/run_default.sh, resumable)"
    bash train/run_default.sh
fi

step "baselines: Rewarded Soups, MORLHF, prompt-only (train what is missing, evaluate)"
python bench/fronts.py --runs "$RUNS"

if [ ! -f "$RUNS/bench/throughput.json" ]; then
    step "throughput"; python bench/throughput.py --out "$RUNS/bench/throughput.json"
fi

step "report"
python bench/fronts.py --report-only --runs "$RUNS"
