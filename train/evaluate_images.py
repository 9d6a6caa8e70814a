"""Evaluate a RiC image model's Pareto front by a preference sweep (METHOD.md sections 7-8).

    python train/evaluate_images.py --model runs/image/model --n-images 64 --out runs/eval_image
    python train/evaluate_images.py --model runs/image/model --base true --n-images 64 \
        --out runs/eval_image_base          # each subject's caption without reward tags
    python train/evaluate_images.py --model runs/sd15/model --prompts coco_1000.txt \
        --num-inference-steps 50 --guidance-scale 7.5 --out runs/eval_sd15      # paper setting

2 objectives sweep w_1 in {0, 0.1, ..., 1} (or --points K) with N images per weight, per
subject for a prompted model (the same seed per subject for every weight). Writes
DIR/front.json (the text evaluator's layout, through ric.evaluation.write_front: reward_names,
reference_point, hypervolume, points with weights/desired/achieved, controllability; plus
per_subject and reward_conflict_generated for a prompted model), DIR/samples.jsonl,
DIR/images/, DIR/grid.png (a row of samples per weight), DIR/subjects.png (a prompted model: a
row per subject at both ends and the middle of the sweep) and DIR/front.html/png. Rerun the same
command to resume an interrupted sweep.
"""

from pathlib import Path

from ric.config import parse_args
from ric.image.evaluation import ImageEvalConfig, evaluate_image_front


def main(argv=None):
    cfg = parse_args(ImageEvalConfig, argv, description=__doc__)
    front = evaluate_image_front(cfg)
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
    print(f"written to {cfg.out} (samples: {Path(cfg.out) / 'grid.png'})")


if __name__ == "__main__":
    main()
