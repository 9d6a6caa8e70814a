#!/usr/bin/env bash
# Rebuild the embedded default text model from scratch, on the base model's own answers:
# data -> objectives table -> SFT -> MORS (five iterations) -> mapping calibration -> fronts ->
# ship -> docs.
# Every step resumes from its own checkpoints and a finished step is skipped: rerun the same
# command after a kill, or in a later session. Run it in the background, on one core while you
# work beside it (OMP_NUM_THREADS=2: both cores, the SFT steps about twice as fast):
#
#   OMP_NUM_THREADS=1 nohup bash train/run_default.sh > runs/run_default.log 2>&1 &
#
# Its logged CPU cost (each step's cost.jsonl, summed over attempts) is RiC's honest cost.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Every step samples with the fast CPU engine (onnx int8, the LoRA merged; docs/ENGINES.md).
# On the first 64 answers of the data plan it ended 89% of them by themselves (median 344
# tokens) against 91% (335) for the transformers engine, in 85 s on 2 threads against 7.5 min
# on 1 (train/recipes/cpu_data.yaml). RIC_BACKEND=transformers samples the bf16 model instead.
export RIC_BACKEND=${RIC_BACKEND:-auto}
if [ -z "${PY:-}" ]; then PY=python; [ -x .venv/bin/python ] && PY=.venv/bin/python; fi
step() { echo; echo "== $(date -u +%H:%M:%S) $*"; }
done_or() { [ -f "$1" ] && echo "   done: $1" || "${@:2}"; }

step "1. offline data: the base model's own answers, scored with every candidate reward"
done_or runs/data/data.json $PY train/prepare_dataset.py --config train/recipes/cpu_data.yaml

step "2. objectives: spread and conflicts of each reward (docs/REWARDS.md)"
$PY train/measure_rewards.py --data runs/data --out docs/REWARDS.md
$PY -c "
import json, yaml
chosen = json.load(open('runs/data/rewards.json'))['chosen']
used = yaml.safe_load(open('train/recipes/cpu_sft.yaml'))['rewards']
print('   objectives: measured choice', chosen, '| cpu_sft.yaml conditions on', used,
      '' if sorted(chosen) == sorted(used) else '(DIFFERENT: review docs/REWARDS.md)')"

step "3. offline RiC SFT"
# The MORS stages carry this one's lineage (cost, recipe) in their ric.json: a checkout that
# dropped runs/sft to save space, after step 4 had run, resumes without retraining it.
if [ -f runs/online/adapter/ric.json ] && [ ! -d runs/sft ]; then
    echo "   done: runs/online/adapter/ric.json was built on it"
else
    done_or runs/sft/adapter/ric.json $PY train/sft.py --config train/recipes/cpu_sft.yaml
fi

step "4. online RiC: one MORS iteration"
done_or runs/online/adapter/ric.json $PY train/online.py --config train/recipes/cpu_online.yaml

step "4b. online RiC: a second MORS iteration, trained only on answers that stay on topic"
done_or runs/online2/adapter/ric.json $PY train/online.py --config train/recipes/cpu_online2.yaml

step "4c. online RiC: a third MORS iteration, the relevance floor raised to the median"
done_or runs/online3/adapter/ric.json $PY train/online.py --config train/recipes/cpu_online3.yaml

step "4d. online RiC: a fourth MORS iteration, half its prompts in the styles train.txt lacks"
done_or runs/online4/adapter/ric.json $PY train/online.py --config train/recipes/cpu_online4.yaml

step "4e. online RiC: on the second iteration, each answer held to its own prompt's relevance"
done_or runs/online5/adapter/ric.json $PY train/online.py --config train/recipes/cpu_online5.yaml

step "5. each candidate's mapping range, chosen on 40 TRAINING prompts (never on the held-out ones)"
# Candidates narrow the upbeat and the long ends: asked for the extremes, the offline default
# looped a word or flooded emoji at w = (1, 0); on its calibration and on the first MORS
# iteration's only a positivity top at the 0.85 or 0.75 quantile kept every point above the
# guards, and the full range failed both (docs/TRAINING.md), so it is no longer a candidate.
# The range is part of what ships with an adapter, so each candidate is measured and shipped
# at its own (the second and third iterations chose the 0.75 top, the fourth the 0.95 one).
calibrate() {
    done_or runs/calibrate_$1/calibration.json $PY train/calibrate.py --adapter runs/$1/adapter \
        --method l2 --max-prompts 40 --points 6 --out runs/calibrate_$1 --candidates \
        "[[[0.05, 0.95], [0.15, 0.95]], [[0.05, 0.85], [0.15, 0.95]], [[0.05, 0.75], [0.15, 0.95]]]"
}
range_of() {
    $PY -c "import json; print(json.load(open('runs/calibrate_$1/calibration.json'))['chosen']['range_quantiles'])"
}
E="$PY train/evaluate.py"
# front ADAPTER OUT [evaluate.py options]: the adapter's sweep at its own range (calibrated on
# first use), unless OUT has one.
front() {
    local A=$1 OUT=$2
    shift 2
    if [ -f "$OUT/front.json" ]; then echo "   done: $OUT/front.json"; return; fi
    calibrate "$A"
    $E --adapter "runs/$A/adapter" --method l2 --range-quantiles "$(range_of "$A")" --out "$OUT" "$@"
}
CANDIDATES="online5 online4 online3 online2 online sft"
name_of() { case $1 in sft) echo "RiC offline";; online) echo "RiC + MORS, first iteration";;
    online2) echo "RiC + MORS, second iteration";; online3) echo "RiC + MORS, third iteration";;
    online4) echo "RiC + MORS, fourth iteration";;
    *) echo "RiC + MORS, per-prompt relevance floor";; esac; }

step "6. fronts on the first 60 held-out prompts (11 points): base, RiC offline, RiC + MORS"
done_or runs/eval_base/front.json $E --adapter runs/sft/adapter --base true --out runs/eval_base
front online5 runs/eval_online5 --label "RiC + MORS"
front online4 runs/eval_online4 --label "RiC + MORS"
front online3 runs/eval_online3 --label "RiC + MORS"
front online2 runs/eval_online2 --label "RiC + MORS"
front online runs/eval_online --label "RiC + MORS, first iteration"
front sft runs/eval_sft --label "RiC offline"

step "7. ship the better model: fewer bars missed (guards at each point, Spearman), then the larger hypervolume"
SHIP=$($PY -c "
import json
from ric.evaluation import pick_model
base = json.load(open('runs/eval_base/front.json'))['points'][0]['guards']
print(pick_model({n: json.load(open(f'runs/eval_{n}/front.json')) for n in '$CANDIDATES'.split()}, base))")
echo "   shipping runs/$SHIP/adapter"
calibrate "$SHIP"
# 7b. Its range once more, on HAND-WRITTEN prompts (the spent unseen50 and unseen60): the
# training and held-out prompts are generated from templates, and on every fresh hand-written
# set the range chosen on them left an end of the sliders just below the relevance bar. The
# candidates: the range chosen on training prompts, then a lower brevity top (the brief end's
# dodges), then lower positivity ends too; then higher brevity bottoms (added after unseen70:
# there the upbeat end's relevance fell with length, 0.56 under 200 tokens, 0.47 above).
step "7b. the shipped model's range, chosen again on 100 hand-written prompts"
HAND_BREVITY_TOP="[[0.05, 0.75], [0.15, 0.85]]"  # shipped until the brevity bottoms were added
done_or runs/calibrate_hand_$SHIP/calibration.json $PY train/calibrate.py \
    --adapter runs/$SHIP/adapter --method l2 --max-prompts 100 --points 3 \
    --prompts assets/prompts/unseen50.txt,assets/prompts/unseen60.txt \
    --out runs/calibrate_hand_$SHIP --candidates \
    "[$(range_of "$SHIP"), $HAND_BREVITY_TOP, [[0.15, 0.65], [0.15, 0.85]], \
      [[0.05, 0.75], [0.3, 0.85]], [[0.05, 0.75], [0.45, 0.85]]]"
RQ=$(range_of "hand_$SHIP")
SHIPPED=runs/eval_$SHIP
if [ "$RQ" != "$(range_of "$SHIP")" ]; then  # the held-out front at the range that ships
    SHIPPED=runs/eval_${SHIP}_hand
    done_or $SHIPPED/front.json $E --adapter runs/$SHIP/adapter --method l2 \
        --range-quantiles "$RQ" --out $SHIPPED \
        --label "$(name_of "$SHIP"), range chosen on hand-written prompts"
fi
# shellcheck disable=SC2046  # LO HI pairs, one word each
done_or runs/shipped_$SHIP.done $PY train/ship.py --adapter runs/$SHIP/adapter \
    --front $SHIPPED/front.json --base-front runs/eval_base/front.json \
    $([ "$SHIP" != sft ] && echo --offline-front runs/eval_sft/front.json) \
    --mapping l2 --range-quantiles $($PY -c "import numpy; print(*numpy.ravel($RQ))")
touch runs/shipped_$SHIP.done

step "8. the shipped default and the base model on prompts the project never trained on (5 points)"
# unseen30, unseen30b, unseen40 and unseen50 informed the relevance floors (4b, 4c, 4e) and the
# styles prompts (4d), unseen50 and unseen60 the shipped range (7b): development sets now, each
# at the range chosen on training prompts, as first measured. The MORS iterations not shipped
# run on unseen40, the fourth and the second on unseen50, for comparison only.
for U in unseen30 unseen30b unseen40 unseen50 unseen60; do
    K=1; [[ " unseen50 unseen60 " == *" $U "* ]] && K=3
    for A in $CANDIDATES; do
        case $U in
            unseen40) [ "$A" != sft ] || [ "$A" = "$SHIP" ] || continue ;;
            unseen50) [[ " online4 online2 " == *" $A "* ]] || continue ;;
            unseen60) [ "$A" = "$SHIP" ] || continue ;;
            *) [ "$A" = "$SHIP" ] || continue ;;
        esac
        front "$A" "runs/eval_${A}_$U" --prompts "assets/prompts/$U.txt" --points 5 \
            --samples $K \
            --label "$(name_of $A)$([ "$A" = "$SHIP" ] && echo ", shipped"), unseen prompts ($U)"
    done
    done_or runs/eval_base_$U/front.json $E --prompts assets/prompts/$U.txt --base true \
        --samples $K --out runs/eval_base_$U
done
# fresh SET RANGE: the shipped model at RANGE and the base model on the prompt set SET, 5
# weights, three replies a prompt (with one, a point's mean relevance moves by about 0.035, the
# size of the misses seen before).
fresh() {
    done_or "runs/eval_${SHIP}_$1/front.json" $E --adapter "runs/$SHIP/adapter" --method l2 \
        --range-quantiles "$2" --prompts "assets/prompts/$1.txt" --points 5 --samples 3 \
        --out "runs/eval_${SHIP}_$1" --label "$(name_of "$SHIP"), shipped, unseen prompts ($1)"
    done_or "runs/eval_base_$1/front.json" $E --prompts "assets/prompts/$1.txt" --base true \
        --samples 3 --out "runs/eval_base_$1"
}
# unseen70 was the final check of the range shipped before the brevity bottoms were added to
# 7b; it is a development set now, kept at that range as first measured.
fresh unseen70 "$HAND_BREVITY_TOP"
# unseen80 is the final check: written and committed before any model or range ran on it, never
# used to choose either; the shipped model at the shipped range.
fresh unseen80 "$RQ"

step "9. docs/TRAINING.md"
U=runs/eval_${SHIP}_
$PY train/report.py --data runs/data --stages runs/sft \
    --fronts base=runs/eval_base,offline=runs/eval_sft,online1=runs/eval_online,online2=runs/eval_online2,online3=runs/eval_online3,online4=runs/eval_online4,online5=runs/eval_online5,shipped_unseen30=${U}unseen30,base_unseen30=runs/eval_base_unseen30,shipped_unseen30b=${U}unseen30b,base_unseen30b=runs/eval_base_unseen30b,online1_unseen40=runs/eval_online_unseen40,online2_unseen40=runs/eval_online2_unseen40,online3_unseen40=runs/eval_online3_unseen40,online4_unseen40=runs/eval_online4_unseen40,base_unseen40=runs/eval_base_unseen40,online2_unseen50=runs/eval_online2_unseen50,online4_unseen50=runs/eval_online4_unseen50,base_unseen50=runs/eval_base_unseen50,online5_unseen40=runs/eval_online5_unseen40,shipped_unseen60=${U}unseen60,base_unseen60=runs/eval_base_unseen60,shipped=$SHIPPED,shipped_unseen70=${U}unseen70,base_unseen70=runs/eval_base_unseen70,shipped_unseen80=${U}unseen80,base_unseen80=runs/eval_base_unseen80 \
    --calibration runs/calibrate_$SHIP,runs/calibrate_hand_$SHIP \
    --plot base,offline,online1,online2,online4,online5,shipped --examples shipped=6 \
    --summary "$(cat docs/training_summary.md)"
step "done"
