#!/usr/bin/env bash
# Rebuild the embedded default text model end to end on a CPU, exactly as it was built (three
# offline SFT stages, then one MORS iteration), ship it to assets/text and write
# docs/TRAINING.md. Every step resumes from its own checkpoints: rerun after a kill.
#
#   bash train/run_default.sh          # ~4 hours on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
PY=${PY:-python}
SFT="$PY train/sft.py --config train/recipes/cpu_sft.yaml"

# Stages 1-2: data with tone openers and sentence cuts; positivity learns to steer here.
$PY train/prepare_dataset.py --config train/recipes/cpu_data.yaml
[ -f runs/sft/adapter/ric.json ] || $SFT
[ -f runs/sft2/adapter/ric.json ] || $SFT --init-adapter runs/sft/adapter --out-dir runs/sft2 \
    --max-steps 150 --seed 1
# Stage 3: data with length primers, named tags (not yet run to the end; docs/TRAINING.md).
$PY train/prepare_dataset.py --config train/recipes/cpu_data_primed.yaml
[ -f runs/sft3/adapter/ric.json ] || $PY train/sft.py --config train/recipes/cpu_sft_primed.yaml
$PY train/evaluate.py --adapter runs/sft3/adapter --label "RiC offline" --out runs/eval_sft3
$PY train/evaluate.py --adapter runs/sft3/adapter --base true --out runs/eval_base
[ -f runs/online/adapter/ric.json ] || $PY train/online.py --config train/recipes/cpu_online.yaml
$PY train/evaluate.py --adapter runs/online/adapter --label "RiC + MORS" --out runs/eval_online
$PY train/ship.py --adapter runs/online/adapter --front runs/eval_online/front.json \
    --base-front runs/eval_base/front.json --offline-front runs/eval_sft3/front.json
$PY train/report.py --data runs/data,runs/data_primed --stages runs/sft,runs/sft2,runs/sft3 \
    --fronts base=runs/eval_base,offline=runs/eval_sft3,online=runs/eval_online
