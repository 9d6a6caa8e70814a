"""Choose the preference mapping's range on calibration prompts, not on the held-out ones.

    python train/calibrate.py --adapter runs/online/adapter --method l2 \
        --candidates "[[0.5, 0.95], [[0.35, 0.95], [0.5, 0.95]]]" --out runs/calibrate

Sweeps the adapter once per candidate range (each [lo, hi] or one [lo, hi] per reward, as
quantiles of the training rewards) on training prompts, and picks the one with the highest
worst-objective Spearman, then hypervolume. Writes DIR/range<k>/front.json per candidate and
DIR/calibration.json (the table and the choice). Rerun the same command to resume.
"""

from ric.config import parse_args
from ric.evaluation import CalibrateConfig, calibrate_range


def main(argv=None):
    cfg = parse_args(CalibrateConfig, argv, description=__doc__)
    result = calibrate_range(cfg)
    for c in result["candidates"]:
        sp = ", ".join(f"{x:.2f}" for x in c["spearman"])
        print(f"  {c['range_quantiles']}: hypervolume {c['hypervolume']:.2f}, Spearman {sp}")
    print(f"chosen: {result['chosen']['range_quantiles']} ({result['rule']})")


if __name__ == "__main__":
    main()
