"""Train a RiC image model: the embedded 32x32 UNet on a CPU, or Stable Diffusion on GPUs.

    python train/train_diffusion.py --config train/recipes/cpu_image.yaml    # ~20 min, 2 cores
    python train/train_diffusion.py --config train/recipes/paper_sd15.yaml \
        --train-data DATA   # one GPU and the hub (docs/IMAGE.md)

Writes OUT/model/ (weights as safetensors, scheduler/, reward_stats.json, ric.json with kind
"image"), OUT/train_log.jsonl and OUT/train_summary.json (measured wall time per step and the
time to sample 4 images). Checkpoints go to OUT/checkpoint/; rerunning the same command after a
kill resumes from the last one. Ship the embedded model with train/evaluate_images.py and then
`cp -r OUT/model assets/image/model` (see docs/IMAGE.md).
"""

from ric.config import parse_args
from ric.diffusion import ImageRecipe, train_image_model


def main(argv=None):
    recipe = parse_args(ImageRecipe, argv, description=__doc__)
    folder = train_image_model(recipe)
    print(f"image model written to {folder}")


if __name__ == "__main__":
    main()
