"""Copy a trained model and its evaluated fronts into assets/ as the embedded default.

Text (a RiC LoRA adapter):

    python train/ship.py --adapter runs/online/adapter --front runs/eval_online/front.json \
        --base-front runs/eval_base/front.json --offline-front runs/eval_sft/front.json

writes assets/text/adapter/ (LoRA weights, ric.json, reward_stats.json), assets/text/front.json,
assets/text/base_front.json, assets/text/offline_front.json and assets/text/base_meta.json (the
metadata the app uses when it runs the base model alone).

Image (the embedded diffusion model):

    python train/ship.py --image runs/image/model --front runs/eval_image/front.json \
        --base-front runs/eval_image_base/front.json --dest assets/image

writes assets/image/model/, front.json, base_front.json, grid.png and subjects.png (from the
front's folder); sampling settings the front was evaluated with (guidance scales, steps) become
the shipped model's defaults.

--mapping / --range-quantiles set the shipped artifact's inference defaults (the preference
mapping and its range as quantiles of the training rewards); the front must have been evaluated
with the same settings, which is checked. Samples and checkpoints stay in runs/.
"""

import argparse
import shutil
from pathlib import Path

from ric.artifacts import RicMeta, atomic_dir, clean_stale_tmp, read_json, write_json
from ric.mapping import METHODS
from ric.normalization import RewardStats, parse_range_quantiles

KEEP = ("adapter_config.json", "adapter_model.safetensors", "ric.json", "reward_stats.json")


def _copy(
    src: Path, dest: Path, names=None, mapping=None, range_quantiles=None, sampling=None
) -> None:
    """Replace dest by a copy of src (only `names` if given) with its inference defaults set
    (retarget), whole: built in a temporary folder and renamed (ric.artifacts.atomic_dir)."""
    clean_stale_tmp(dest.parent)
    with atomic_dir(dest) as tmp:
        if names is None:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        else:
            for name in names:
                shutil.copy2(src / name, tmp / name)
        retarget(tmp, mapping, range_quantiles, sampling)


# An image front's sampling settings that the shipped model must reuse to draw what was measured.
SAMPLING = ("guidance_scale", "reward_guidance_scale", "num_inference_steps")


def image_sampling(front: dict) -> dict:
    """The sampling settings an image front was evaluated with, where it overrode the model's."""
    st = front.get("settings", {})
    return {k: st[k] for k in SAMPLING if st.get(k) is not None}


def retarget(
    folder: Path, mapping: str | None, range_quantiles: list | None, sampling: dict | None = None
) -> None:
    """Rewrite the inference defaults in folder/ric.json (and reward_stats.json)."""
    meta = RicMeta.load(folder)
    meta.extra.update(sampling or {})
    if range_quantiles:
        stats = RewardStats.from_dict(meta.stats).with_range(range_quantiles)
        meta.stats = stats.to_dict()
        if (folder / "reward_stats.json").exists():
            stats.save(folder)
    if mapping:
        meta.mapping = mapping
    meta.save(folder)


def _check_front(front: dict, mapping: str | None, range_quantiles: list | None) -> None:
    st = front.get("settings", {})
    if mapping and st.get("method") not in (None, mapping):
        raise SystemExit(
            f"the front was evaluated with mapping {st.get('method')!r}, not {mapping!r}"
        )
    if mapping and st.get("method") is None:
        raise SystemExit(
            f"the front was evaluated with the artifact's mapping, not --mapping {mapping}"
        )
    if not range_quantiles:
        return
    got, n = st.get("range_quantiles"), len(front["reward_names"])
    if got is None or (
        parse_range_quantiles(got, n).tolist() != parse_range_quantiles(range_quantiles, n).tolist()
    ):
        raise SystemExit(
            f"the front was evaluated with range_quantiles {got}, not {range_quantiles}"
        )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--adapter", help="RiC text adapter folder")
    kind.add_argument("--image", help="RiC image model folder")
    p.add_argument("--front", required=True)
    p.add_argument("--base-front", required=True)
    p.add_argument("--offline-front")
    p.add_argument("--mapping", help="set the shipped default mapping (ric, l2, linear, quantile)")
    p.add_argument(
        "--range-quantiles",
        nargs="+",
        type=float,
        metavar="Q",
        help="LO HI for every reward, or LO1 HI1 LO2 HI2 ... one pair per reward",
    )
    p.add_argument("--dest", help="default: assets/text or assets/image")
    args = p.parse_args(argv)
    if args.mapping and args.mapping not in METHODS:
        p.error(f"--mapping must be one of {METHODS}, got {args.mapping!r}")
    rq = args.range_quantiles
    if rq and len(rq) > 2:
        if len(rq) % 2:
            p.error(f"--range-quantiles takes LO HI pairs, got {len(rq)} numbers")
        rq = args.range_quantiles = [rq[i : i + 2] for i in range(0, len(rq), 2)]
    front = read_json(args.front)
    _check_front(front, args.mapping, args.range_quantiles)
    if args.adapter:
        dest = Path(args.dest or "assets/text")
        target = dest / "adapter"
        _copy(Path(args.adapter), target, KEEP, args.mapping, args.range_quantiles)
    else:
        dest = Path(args.dest or "assets/image")
        target = dest / "model"
        _copy(
            Path(args.image),
            target,
            None,
            args.mapping,
            args.range_quantiles,
            image_sampling(front),
        )
        for name in ("grid.png", "subjects.png"):
            src = Path(args.front).parent / name
            if src.exists():
                shutil.copy2(src, dest / name)
            else:  # a grid left by a previously shipped model would describe the wrong one
                (dest / name).unlink(missing_ok=True)
    fronts = {
        "front.json": args.front,
        "base_front.json": args.base_front,
        "offline_front.json": args.offline_front,
    }
    for name, src in fronts.items():
        if src:
            write_json(dest / name, read_json(src))
        elif name == "offline_front.json":  # a previous model's comparison would mislead
            (dest / name).unlink(missing_ok=True)
    if args.adapter:
        write_json(dest / "base_meta.json", read_json(target / "ric.json"))
    print(f"shipped to {dest}")


if __name__ == "__main__":
    main()
