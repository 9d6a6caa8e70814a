"""Copy a trained adapter and its evaluated fronts into assets/ as the embedded default.

    python train/ship.py --adapter runs/online/adapter --front runs/eval_online/front.json \
        --base-front runs/eval_base/front.json --offline-front runs/eval_sft/front.json

Writes assets/text/adapter/ (LoRA weights, ric.json, reward_stats.json), assets/text/front.json,
assets/text/base_front.json, assets/text/offline_front.json and assets/text/base_meta.json (the
metadata the app uses when it runs the base model alone). Samples and checkpoints stay in runs/.
"""

import argparse
import shutil
from pathlib import Path

from ric.artifacts import read_json, write_json

KEEP = ("adapter_config.json", "adapter_model.safetensors", "ric.json", "reward_stats.json")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--adapter", required=True)
    p.add_argument("--front", required=True)
    p.add_argument("--base-front", required=True)
    p.add_argument("--offline-front")
    p.add_argument("--dest", default="assets/text")
    args = p.parse_args(argv)
    dest = Path(args.dest)
    tmp = dest / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in KEEP:
        shutil.copy2(Path(args.adapter) / name, tmp / name)
    shutil.rmtree(dest / "adapter", ignore_errors=True)
    tmp.rename(dest / "adapter")
    fronts = {
        "front.json": args.front,
        "base_front.json": args.base_front,
        "offline_front.json": args.offline_front,
    }
    for name, src in fronts.items():
        if src:
            write_json(dest / name, read_json(src))
    write_json(dest / "base_meta.json", read_json(dest / "adapter" / "ric.json"))
    print(f"shipped to {dest}")


if __name__ == "__main__":
    main()
