"""The preference sweep for images (docs/METHOD.md sections 7-8), on ric.evaluation's road.

For each weight of the sweep and each prompt (a prompted model: each subject, n_images times,
with one seed per subject shared by every weight, so rows of a grid differ by the preference
only), generate, score, and aggregate with ric.evaluation (aggregate_sweep, write_front, the
reference point). Image fronts add, per subject: the mean rewards at each weight and how often
the shipped classifier names the prompted subject.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ric.artifacts import append_jsonl, read_jsonl
from ric.config import field
from ric.image.sampling import SteerableImageModel
from ric.mapping import simplex_grid


@dataclasses.dataclass
class ImageEvalConfig:
    model: str = field("assets/image/model", "RiC image model folder")
    base: bool = field(False, "evaluate WITHOUT reward tags (the caption alone): one point")
    n_images: int = field(32, "images per weight (per subject for a prompted model)")
    subjects: list | None = field(None, "prompted model: subjects to prompt (default: all)")
    prompts: str | None = field(None, "captions file, one per line (sd; e.g. 1000 COCO captions)")
    max_prompts: int | None = field(None, "use the first N captions")
    points: int | None = field(None, "K evenly spaced weights (2 objectives; default 11)")
    method: str | None = field(None, "mapping method (default: the model's)")
    range_quantiles: list | None = field(
        None,
        "mapping range as quantiles of the training rewards, e.g. [0.05, 0.95] "
        "(default: the artifact's own)",
    )
    guidance_scale: float | None = field(None, "CFG scale (default: the model's)")
    reward_guidance_scale: float | None = field(
        None, "embedded: a separate scale for the reward tags (sample_embedded; default: none)"
    )
    num_inference_steps: int | None = field(None, "sampling steps (default: the model's)")
    batch_size: int = field(16, "images per sampling batch")
    reference_point: list | None = field(
        None, "hypervolume reference point (default: each reward's 0.02 training quantile)"
    )
    grid_cols: int = field(8, "samples per row in the PNG grid")
    label: str | None = field(None, "name of this front in plots and tables")
    out: str = field("runs/eval_image", "output folder: front.json, samples.jsonl, grid.png")
    seed: int = field(1000, "sampling seed (subject k uses seed + k), the same for every weight")
    device: str | None = field(None, "torch device")


def _captions(cfg: ImageEvalConfig, steer: SteerableImageModel) -> list[list[str]]:
    """Caption groups, each sampled with its own seed: one per subject (prompted model), the
    prompts file (sd), or n_images empty captions."""
    if steer.subjects:
        subjects = cfg.subjects or steer.subjects
        steer.check_prompts(subjects)
        return [[s] * cfg.n_images for s in subjects]
    if cfg.prompts:
        from ric.data import read_prompts

        return [read_prompts(cfg.prompts)[: cfg.max_prompts]]
    return [[""] * cfg.n_images]


def _subject_report(steer, sweep, rows, out: Path) -> dict:
    """Per subject: mean normalized rewards per weight and the share of images the shipped
    classifier names as the prompted subject (chance = 1 / number of subjects)."""
    from PIL import Image

    from ric.image.classifier import SubjectClassifier
    from ric.image.embedded import CLASSIFIER_DIR

    folder = Path(steer.folder) / CLASSIFIER_DIR if steer.folder else None
    if folder is None or not folder.exists():
        return {}
    clf = SubjectClassifier.load(folder)
    report = {}
    for subject in sorted({r["prompt"] for r in rows}, key=steer.subjects.index):
        per_w = []
        for w in sweep:
            mine = [r for r in rows if r["prompt"] == subject and r["weights"] == w]
            images = []
            for r in mine:
                with Image.open(out / r["image"]) as im:
                    images.append(np.asarray(im.convert("RGB")))
            named = clf.probabilities(images).argmax(1) == clf.subjects.index(subject)
            per_w.append(
                {
                    "weights": w,
                    "achieved": np.mean([r["achieved"] for r in mine], axis=0).round(4).tolist(),
                    "named_rate": round(float(named.mean()), 4),
                }
            )
        report[subject] = per_w
    return report


def evaluate_image_front(cfg: ImageEvalConfig, steer: SteerableImageModel | None = None) -> dict:
    """Run (or resume) the sweep; writes cfg.out/front.json, samples.jsonl, images/ and
    grid.png (one row of samples per weight) and returns the front."""
    from ric.evaluation import check_resume, model_file_mtime, write_front
    from ric.runlog import RunClock

    out = Path(cfg.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    clock = RunClock(out)
    steer = steer or SteerableImageModel.load(cfg.model, cfg.device, base=cfg.base)
    if cfg.range_quantiles:
        steer.stats = steer.stats.with_range(cfg.range_quantiles)
    if cfg.reward_guidance_scale is not None:
        steer.set_reward_guidance(cfg.reward_guidance_scale)
    groups = _captions(cfg, steer)
    sweep = [None] if cfg.base else simplex_grid(len(steer.reward_names), cfg.points).tolist()
    samples = out / "samples.jsonl"
    skip = ("out", "label", "batch_size", "grid_cols", "device", "reference_point")
    check_resume(
        out,
        {
            **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip},
            "reward_names": steer.reward_names,
            "stats": steer.stats.to_dict(),
            "weights_mtime": model_file_mtime(cfg.model, "conditioner.safetensors"),
        },
    )
    done = {
        (tuple(r["weights"]) if r["weights"] else None, r["group"]) for r in read_jsonl(samples)
    }
    for k, w in enumerate(sweep):
        for g, captions in enumerate(groups):
            if (tuple(w) if w else None, g) in done:
                continue
            images, desired, achieved = steer.generate(
                w,
                n=len(captions),
                seed=cfg.seed + g,
                method=cfg.method,
                prompt=captions,
                guidance_scale=cfg.guidance_scale,
                num_inference_steps=cfg.num_inference_steps,
                batch_size=cfg.batch_size,
                progress=True,
            )
            rows = []
            for j, (img, cap, a) in enumerate(zip(images, captions, achieved, strict=True)):
                name = f"w{k:02d}_g{g:02d}_{j:04d}.png"
                img.save(out / "images" / name)
                rows.append(
                    {
                        "weights": w,
                        "group": g,
                        "desired": None if desired is None else desired.tolist(),
                        "prompt": cap,
                        "image": f"images/{name}",
                        "achieved": a.round(4).tolist(),
                    }
                )
            append_jsonl(samples, rows)
            clock.tick()
    rows = read_jsonl(samples)
    cost = clock.stop()
    label = cfg.label or ("caption only (no reward tags)" if cfg.base else "RiC (image)")
    extra = {"label": label, "stats_source": steer.stats.range_source}
    # Which model the front measured: a folder's name says nothing once it is retrained or
    # replaced (a continued run's folder held the shorter run's model until it was saved).
    trained = steer.meta.extra.get("train", {})
    extra["model_train"] = {k: trained[k] for k in ("steps", "final_loss") if k in trained}
    if steer.subjects:
        extra["per_subject"] = _subject_report(steer, sweep, rows, out)
    if len(steer.reward_names) >= 2 and len(rows) > 2:
        # How the rewards pull against each other over the generated images (as measured on
        # the training images in the model's train summary).
        from ric.image.embedded import reward_conflict

        achieved = np.array([r["achieved"] for r in rows])
        labels = None
        if steer.subjects:
            labels = np.array([steer.subjects.index(r["prompt"]) for r in rows])
        extra["reward_conflict_generated"] = reward_conflict(achieved, labels)
    front = write_front(
        cfg, steer, sweep, rows, cost["wall_seconds"], cost["cpu_seconds"], False, extra
    )
    save_image_grid(out, rows, sweep, cfg.grid_cols)
    if steer.subjects and not cfg.base:
        # Both ends and the middle of the sweep, one row per subject (docs/IMAGE.md's figure).
        ends = [sweep[-1], sweep[len(sweep) // 2], sweep[0]]
        save_subject_grid(out, out / "subjects.png", ends)
    return front


def save_image_grid(out: Path, rows: list[dict], sweep: list, cols: int = 8) -> Path:
    """out/grid.png: one row of samples per weight (the first caption group), labelled."""
    from PIL import Image, ImageDraw

    from ric.plotting import weights_text

    cell, label_w = 96, 120
    grid = Image.new("RGB", (label_w + cols * cell, len(sweep) * cell), "white")
    draw = ImageDraw.Draw(grid)
    for i, w in enumerate(sweep):
        mine = [r for r in rows if r["weights"] == w and r.get("group", 0) == 0][:cols]
        draw.text((4, i * cell + cell // 2 - 6), weights_text(w) if w else "no pref.", fill="black")
        for j, r in enumerate(mine):
            with Image.open(out / r["image"]) as im:
                tile = im.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            grid.paste(tile, (label_w + j * cell, i * cell))
    path = out / "grid.png"
    grid.save(path)
    return path


def save_subject_grid(
    out: Path, path: Path, weights: list[list[float]], per: int = 4, cell: int = 64
) -> Path:
    """One row per subject, `per` samples at each of `weights` side by side (from a sweep's
    out/samples.jsonl): the picture docs/IMAGE.md shows; the evaluator writes out/subjects.png
    at both ends and the middle of a prompted model's sweep."""
    from PIL import Image, ImageDraw

    rows = read_jsonl(Path(out) / "samples.jsonl")
    subjects = list(dict.fromkeys(r["prompt"] for r in rows))
    label_w, head = 90, 16
    width = label_w + len(weights) * (per * cell + 8)
    grid = Image.new("RGB", (width, head + len(subjects) * cell), "white")
    draw = ImageDraw.Draw(grid)
    for b, w in enumerate(weights):
        draw.text((label_w + b * (per * cell + 8), 2), f"w={w}", fill="black")
    for i, subject in enumerate(subjects):
        draw.text((4, head + i * cell + cell // 2 - 6), subject, fill="black")
        for b, w in enumerate(weights):
            mine = [r for r in rows if r["prompt"] == subject and r["weights"] == w][:per]
            for j, r in enumerate(mine):
                with Image.open(Path(out) / r["image"]) as im:
                    tile = im.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
                grid.paste(tile, (label_w + b * (per * cell + 8) + j * cell, head + i * cell))
    grid.save(path)
    return Path(path)
