"""Online RiC: multi-objective rejection sampling (MORS) iterations on an offline adapter.

    python train/online.py --config train/recipes/cpu_online.yaml

Per iteration (docs/METHOD.md section 5): sample prompts, draw desired rewards on the upper boundary
of the reward box, generate, relabel each sample with the rewards it OBTAINED, keep samples with
any reward at or above its 0.7 quantile, mix with the filtered offline data, continue SFT of the
same adapter. Writes OUT/iter_<k>/ (samples, scores, sft/adapter, mors.json) and OUT/adapter
(the last iteration's adapter). Rerun the same command to resume.
"""

from ric.config import parse_args
from ric.mors import OnlineRecipe, run_online


def main(argv=None):
    recipe = parse_args(OnlineRecipe, argv, description=__doc__)
    print(f"online adapter written to {run_online(recipe)}")


if __name__ == "__main__":
    main()
