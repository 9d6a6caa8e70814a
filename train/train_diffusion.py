"""Train a RiC image model: the prompted embedded 32x32 UNet on a CPU, or Stable Diffusion.

    OMP_NUM_THREADS=1 python train/train_diffusion.py --config train/recipes/cpu_image.yaml
    python train/train_diffusion.py --config train/recipes/paper_sd15.yaml \
        --train-data DATA   # one GPU and the hub (docs/IMAGE.md)

Writes OUT/model/ (weights as safetensors, scheduler/, the compliance classifier in
classifier/, reward_stats.json, ric.json with kind "image"), OUT/train_log.jsonl and
OUT/train_summary.json (wall time per step, reward conflict on the training images, the time to
sample 4 images). Checkpoints go to OUT/checkpoint/; rerunning the same command after a kill
resumes from the last one. Evaluate with train/evaluate_images.py and ship with train/ship.py
(docs/IMAGE.md).
"""

from ric.config import parse_args
from ric.image.recipe import ImageRecipe
from ric.image.training import train_image_model


def main(argv=None):
    recipe = parse_args(ImageRecipe, argv, description=__doc__)
    folder = train_image_model(recipe)
    print(f"image model written to {folder}")


if __name__ == "__main__":
    main()
