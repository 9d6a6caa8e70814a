#!/usr/bin/env bash
# Rebuild the embedded default text model end to end on a CPU, then ship it to assets/text and
# write docs/TRAINING.md. Every step resumes from its own checkpoints: rerun after a kill.
#
#   bash train/run_default.sh          # ~1.5-2 hours on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
PY=${PY:-python}

$PY train/prepare_dataset.py --config train/recipes/cpu_data.yaml
[ -f runs/sft/adapter/ric.json ] || $PY train/sft.py --config train/recipes/cpu_sft.yaml
$PY train/evaluate.py --adapter runs/sft/adapter --label "RiC offline" --out runs/eval_sft
$PY train/evaluate.py --adapter runs/sft/adapter --base true --out runs/eval_base
[ -f runs/online/adapter/ric.json ] || $PY train/online.py --config train/recipes/cpu_online.yaml
$PY train/evaluate.py --adapter runs/online/adapter --label "RiC + MORS" --out runs/eval_online
$PY train/ship.py --adapter runs/online/adapter --front runs/eval_online/front.json \
    --base-front runs/eval_base/front.json --offline-front runs/eval_sft/front.json
$PY train/report.py
