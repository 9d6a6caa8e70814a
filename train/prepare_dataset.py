"""Offline RiC data: sample diverse responses per prompt, score them with every reward.

    python train/prepare_dataset.py --config train/recipes/cpu_data.yaml

Or score an HH-RLHF style preference dataset (chosen and rejected both used) instead:

    python train/prepare_dataset.py --config train/recipes/paper_hh_data.yaml

Writes OUT/dataset.jsonl, OUT/reward_stats.json and OUT/data.json (config, counts, reward
correlations, wall and CPU seconds). Killed? Run the same command again: finished samples and
scores are kept and only the rest is done.
"""

from ric.config import parse_args
from ric.data import PrepareConfig, prepare_dataset


def main(argv=None):
    cfg = parse_args(PrepareConfig, argv, description=__doc__)
    out = prepare_dataset(cfg)
    print(f"dataset written to {out}")


if __name__ == "__main__":
    main()
