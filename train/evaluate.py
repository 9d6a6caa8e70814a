"""Evaluate a steerable model's Pareto front by a preference sweep (docs/METHOD.md section 8).

    python train/evaluate.py                                  # the shipped embedded default
    python train/evaluate.py --adapter runs/sft/adapter --out runs/eval_sft
    python train/evaluate.py --base true --out runs/eval_base # base model, no conditioning
    python train/evaluate.py --prompts FILE --points 5 --out DIR
    python train/evaluate.py --adapter runs/sft/adapter --tag-contrast runs/data --out DIR

2 objectives sweep w_1 in {0, 0.1, ..., 1} (or --points K); 3 objectives use 13 fixed vectors.
Writes DIR/front.json (points with weights, desired and mean achieved normalized rewards,
hypervolume with its reference point, controllability), DIR/samples.jsonl, DIR/front.html and
DIR/front.png. Rerun the same command to resume an interrupted sweep. --tag-contrast runs a
cheap diagnostic instead (no generation): how much less likely the adapter finds training
responses under another response's tags (0 = it ignores the tags); DIR/tag_contrast.json.
"""

from pathlib import Path

from ric.config import parse_args
from ric.evaluation import EvalConfig, evaluate_front, evaluate_tag_contrast


def main(argv=None):
    cfg = parse_args(EvalConfig, argv, description=__doc__)
    if cfg.tag_contrast:
        print(evaluate_tag_contrast(cfg))
        return
    front = evaluate_front(cfg)
    from ric.plotting import save_front_figures

    save_front_figures([front], Path(cfg.out) / "front")
    print(
        f"{front['label']}: hypervolume {front['hypervolume']:.4f} "
        f"(reference point {front['reference_point']})"
    )
    for p in front["points"]:
        print(f"  w={p['weights']} desired={p['desired']} achieved={p['achieved']}")
    if "controllability" in front:
        print(f"  spearman={front['controllability']['spearman']}")
    print(f"written to {cfg.out}")


if __name__ == "__main__":
    main()
