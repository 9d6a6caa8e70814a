"""Online RiC: multi-objective rejection sampling (MORS) iterations on an offline adapter.

    python train/online.py --config train/recipes/cpu_online.yaml

Per iteration (METHOD.md section 5): sample prompts, draw desired rewards on the upper boundary
of the reward box, generate, relabel each sample with the rewards it OBTAINED, keep samples with
any reward at or above its 0.7 quantile, mix with the filtered offline data, continue SFT of the
same adapter. Writes OUT/iter_<k>/ (samples, scores, sft/adapter, mors.json) and OUT/adapter
(the last iteration's adapter). Rerun the same command to resume.
"""

import shutil
from pathlib import Path

from ric.artifacts import read_jsonl
from ric.config import parse_args
from ric.training import OnlineRecipe, mors_iteration


def main(argv=None):
    recipe = parse_args(OnlineRecipe, argv, description=__doc__)
    adapter, kept = recipe.adapter, []
    for it in range(1, recipe.iterations + 1):
        done = Path(recipe.out_dir) / f"iter_{it}" / "mors.json"
        if done.exists():  # finished on an earlier run: reuse its adapter and kept samples
            adapter = str(done.parent / "sft" / "adapter")
            kept += [r for r in read_jsonl(done.parent / "kept.jsonl")]
            continue
        adapter, kept = mors_iteration(recipe, adapter, it, kept)
    final = Path(recipe.out_dir) / "adapter"
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(adapter, final)
    print(f"online adapter written to {final}")


if __name__ == "__main__":
    main()
