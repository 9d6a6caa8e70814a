"""Offline RiC SFT: LoRA through TRL's SFTTrainer on reward-conditioned prompts.

    python train/sft.py --config train/recipes/cpu_sft.yaml
    accelerate launch train/sft.py --config train/recipes/paper_hh_llama2_sft.yaml   # GPUs

Writes OUT/adapter/ (LoRA weights, ric.json, reward_stats.json) and OUT/train_log.json.
Checkpoints go to OUT/checkpoints/; rerunning the same command resumes from the latest one.
"""

from ric.config import parse_args
from ric.sft import SFTRecipe, train_sft


def main(argv=None):
    recipe = parse_args(SFTRecipe, argv, description=__doc__)
    adapter = train_sft(recipe)
    print(f"adapter written to {adapter}")


if __name__ == "__main__":
    main()
