"""Choose the preference mapping's range on calibration prompts, not on the held-out ones.

    python train/calibrate.py --adapter runs/online/adapter --method l2 \
        --max-prompts 40 --points 6 --out runs/calibrate

Runs the base model once on the calibration prompts (training prompts, not the held-out ones),
then sweeps the adapter once per candidate range (each [lo, hi] or one [lo, hi] per reward, as
quantiles of the training rewards), and picks the range with the fewest sweep points failing a
quality guard (ric.quality.GUARD_BARS), then the highest worst-objective Spearman, then
hypervolume. Writes DIR/base/, DIR/range<k>/ (a front.json each) and DIR/calibration.json (the
table, each point's failed guards, the choice). Rerun the same command to resume.
"""

from ric.config import parse_args
from ric.evaluation import CalibrateConfig, calibrate_range


def main(argv=None):
    cfg = parse_args(CalibrateConfig, argv, description=__doc__)
    result = calibrate_range(cfg)
    for c in result["candidates"]:
        sp = ", ".join(f"{x:.2f}" for x in c["spearman"])
        failed = sum(len(f) for f in c["guard_failures"].values())
        print(
            f"  {c['range_quantiles']}: hypervolume {c['hypervolume']:.2f}, Spearman {sp}, "
            f"{len(c['guard_failures'])} points failing {failed} guards"
        )
    print(f"chosen: {result['chosen']['range_quantiles']} ({result['rule']})")


if __name__ == "__main__":
    main()
