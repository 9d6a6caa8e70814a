"""Preference sweeps: the empirical Pareto front of a steerable model (docs/METHOD.md section 8).

For each weight vector of the sweep: map it to desired rewards, generate on held-out prompts,
score, and report the MEAN normalized reward vector. The points form the front; hypervolume is
reported with its reference point, plus sparsity and controllability, and every point (the
base point too) carries the quality guards of ric.quality: relevance, stock openings, echo,
share ended by end-of-text, distinct-2.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ric.artifacts import append_jsonl, clean_stale_tmp, read_json, read_jsonl, write_json
from ric.config import field
from ric.data import read_prompts
from ric.defaults import DEFAULT
from ric.generation import GenerationSettings
from ric.mapping import simplex_grid
from ric.models import ADAPTER_WEIGHTS
from ric.normalization import parse_range_quantiles
from ric.pareto import controllability_report, hypervolume, pareto_mask, sparsity
from ric.quality import GUARDS, guard_failures, guard_metrics
from ric.runlog import RunClock, command_line, set_threads_from_env
from ric.steering import SteerableModel

FRONT_FILE = "front.json"
REFERENCE_QUANTILE = 0.02


@dataclasses.dataclass
class EvalConfig:
    adapter: str | None = field("assets/text/adapter", "RiC adapter folder to evaluate")
    model: str | None = field(None, "base model id or path (default: the adapter's base)")
    base: bool = field(False, "evaluate the base model WITHOUT conditioning (one point)")
    prompts: str = field(DEFAULT.eval_prompts, "held-out prompts, one per line")
    max_prompts: int | None = field(60, "use the first N prompts (None: all)")
    skip_prompts: int = field(0, "skip the first N prompts (a second held-out slice)")
    samples: int = field(
        1,
        "replies sampled per prompt at each point; a prompt's rewards are their mean. One reply "
        "a prompt leaves a 40-prompt point's mean relevance about +-0.035 (one standard error)",
    )
    points: int | None = field(None, "K evenly spaced weights (2 objectives; default 11)")
    method: str | None = field(None, "mapping method (default: the adapter's)")
    range_quantiles: list | None = field(
        None,
        "mapping range as quantiles of the training rewards, e.g. [0.05, 0.95] "
        "(default: the artifact's own)",
    )
    max_new_tokens: int = field(
        640, "generation cap (as the training data's: answers end by themselves)"
    )
    temperature: float = field(0.7, "sampling temperature")
    top_p: float = field(0.9, "nucleus sampling")
    repetition_penalty: float = field(
        1.1,
        "above 1 makes a repeated token less likely: the 135M default's loops then end "
        "(as in its training data, train/recipes/cpu_data.yaml)",
    )
    batch_size: int = field(16, "generation batch size")
    backend: str = field("auto", "generation backend (ric.models.BACKENDS, or auto)")
    dtype: str = field("bfloat16", "inference dtype")
    reference_point: list | None = field(
        None, "hypervolume reference point (default: each reward's 0.02 training quantile)"
    )
    system: str | None = field(
        None,
        "a system turn for every reply: probes a hidden sampling instruction before any data "
        "is sampled under it; the rewards score the prompt alone",
    )
    label: str | None = field(None, "name of this front in plots and tables")
    tag_contrast: str | None = field(
        None,
        "instead of a sweep: how much the adapter reads its tags, on this dataset folder "
        "(ric.sft.tag_contrast; writes DIR/tag_contrast.json, no generation)",
    )
    out: str = field("runs/eval", "output folder: front.json, samples.jsonl, front.html/png")
    seed: int = field(0, "sampling seed")


def reference_point(steer: SteerableModel, given=None) -> np.ndarray:
    """One reference point shared by every method evaluated with the same reward statistics."""
    if given is not None:
        ref = np.asarray(given, dtype=float)
        if ref.shape != (len(steer.reward_names),):
            raise ValueError(f"reference_point needs {len(steer.reward_names)} values")
        return ref
    return np.round(steer.stats.quantile(REFERENCE_QUANTILE), 3)


def model_file_mtime(folder, name: str) -> float | None:
    """When a model file was written: a retrained model in the same folder is a new model."""
    path = Path(folder or "") / name
    return path.stat().st_mtime if folder and path.exists() else None


def check_resume(out: Path, fingerprint: dict) -> None:
    """Resuming a sweep reuses its samples, so they must come from the same model, statistics
    and settings: out/sweep.json records them and a mismatch is refused, not silently mixed."""
    path = out / "sweep.json"
    fingerprint = json.loads(json.dumps(fingerprint))  # tuples -> lists, as read back
    if path.exists():
        old = read_json(path)
        diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        if diff:
            raise ValueError(
                f"{out} holds a sweep made with other settings ({', '.join(diff)} differ): "
                "pass another --out or delete that folder"
            )
    elif (out / "samples.jsonl").exists():
        raise ValueError(
            f"{out} holds samples of an unknown sweep: pass another --out or delete it"
        )
    else:
        write_json(path, fingerprint)


def evaluate_front(cfg: EvalConfig, steer: SteerableModel | None = None) -> dict:
    """Run (or resume) the sweep; writes cfg.out/front.json and returns it."""
    set_threads_from_env()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(out)
    clock = RunClock(out)
    if steer is None:
        steer = load_for_eval(cfg)
    if cfg.range_quantiles:
        steer.stats = steer.stats.with_range(cfg.range_quantiles)
    if cfg.skip_prompts < 0:
        raise ValueError(f"skip_prompts must be >= 0, got {cfg.skip_prompts}")
    if cfg.samples < 1:
        raise ValueError(f"samples must be >= 1, got {cfg.samples}")
    prompts = read_prompts(cfg.prompts)[cfg.skip_prompts :][: cfg.max_prompts]
    if not prompts:
        raise ValueError(f"no prompts left in {cfg.prompts} after skipping {cfg.skip_prompts}")
    prompts = prompts * cfg.samples  # one batch of every prompt, then the next, ...
    n = len(steer.reward_names)
    sweep = [None] if cfg.base else simplex_grid(n, cfg.points).tolist()
    settings = GenerationSettings(
        cfg.max_new_tokens, cfg.temperature, cfg.top_p, repetition_penalty=cfg.repetition_penalty
    )
    samples_file = out / "samples.jsonl"
    skip = ("out", "label", "batch_size", "dtype", "reference_point", "tag_contrast", "backend")
    # A sweep made before `samples` existed sampled one reply a prompt: still resumable.
    skip += ("samples",) if cfg.samples == 1 else ()
    check_resume(
        out,
        {
            **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip},
            "reward_names": steer.reward_names,
            "stats": steer.stats.to_dict(),
            "conditioned": steer.conditioned,
            "weights_mtime": model_file_mtime(cfg.adapter, ADAPTER_WEIGHTS),
            # Absent for a model that serves cfg.adapter alone: its older sweeps still resume.
            **(
                {"served_mtimes": [model_file_mtime(d, ADAPTER_WEIGHTS) for d in steer.sources]}
                if steer.sources
                else {}
            ),
        },
    )
    done = {tuple(r["weights"]) if r["weights"] else None for r in read_jsonl(samples_file)}
    for k, w in enumerate(sweep):
        if (tuple(w) if w else None) in done:
            continue
        weights = w if w is not None else [1.0 / n] * n
        outs, desired, achieved = steer.complete_batch(
            prompts,
            weights,
            settings,
            cfg.method,
            cfg.batch_size,
            seed=cfg.seed + k,
            progress=True,
            system=cfg.system,
        )
        rows = [
            {
                "weights": w,
                "desired": None if cfg.base else desired.tolist(),
                "prompt": p,
                "response": o.text,
                "n_tokens": int(o.n_tokens),
                "finished": bool(o.finished),
                "achieved": a.round(4).tolist(),
            }
            for p, o, a in zip(prompts, outs, achieved, strict=True)
        ]
        append_jsonl(samples_file, rows)
        clock.tick()
    cost = clock.stop()
    return write_front(
        cfg, steer, sweep, read_jsonl(samples_file), cost["wall_seconds"], cost["cpu_seconds"]
    )


def aggregate_sweep(sweep, rows: list[dict], by_prompt: bool = False) -> tuple[list, list]:
    """Per sweep point: mean achieved rewards (and their standard error) over its rows, plus
    the per-row rewards, or with `by_prompt` the mean of each prompt's rows (several replies a
    prompt). Shared by the text and image evaluators; text rows (with a "response") also get
    the quality guards, over every reply."""
    points, per_prompt = [], []
    for w in sweep:
        mine = [r for r in rows if r["weights"] == w]
        ach = np.array([r["achieved"] for r in mine])
        if by_prompt:
            order = list(dict.fromkeys(r["prompt"] for r in mine))
            # prompts x rewards: the standard error below then counts prompts, not replies
            ach = np.array(
                [np.mean([r["achieved"] for r in mine if r["prompt"] == p], axis=0) for p in order]
            )
        points.append(
            {
                "weights": w,
                "desired": mine[0]["desired"],
                "achieved": ach.mean(axis=0).round(4).tolist(),
                "achieved_sem": (ach.std(axis=0) / np.sqrt(len(ach))).round(4).tolist(),
            }
        )
        if mine and "response" in mine[0]:
            points[-1]["guards"] = guard_metrics(
                [r["prompt"] for r in mine],
                [r["response"] for r in mine],
                [r.get("finished") for r in mine],
            )
        per_prompt.append(ach.round(3).tolist())
    return points, per_prompt


def write_front(cfg, steer, sweep, rows, wall, cpu, guards: bool = True, extra=None) -> dict:
    """Aggregate a sweep's rows into cfg.out/front.json. The image evaluator passes
    guards=False (its rows are images: no text guards) and its own `extra` fields."""
    names = steer.reward_names
    samples = getattr(cfg, "samples", 1)  # the image evaluator's config has no such field
    points, per_prompt = aggregate_sweep(sweep, rows, by_prompt=samples > 1)
    achieved = np.array([p["achieved"] for p in points])
    ref = reference_point(steer, cfg.reference_point)
    front = {
        "label": cfg.label or ("base (no conditioning)" if cfg.base else "RiC"),
        "reward_names": names,
        "reference_point": ref.tolist(),
        "hypervolume": float(hypervolume(achieved, ref)),
        "sparsity": float(sparsity(achieved[pareto_mask(achieved)])),
        "points": points,
        "per_prompt": {"n_prompts": len(per_prompt[0]), "achieved": per_prompt},
        "samples_per_prompt": samples,
        "settings": dataclasses.asdict(cfg),
        "command": command_line(),
        "stats_source": steer.stats.to_dict()["range_source"],
        # The text engine that generated the replies (image pipelines have none).
        "engine": getattr(getattr(steer, "engine", None), "label", None),
        # The mapping actually used (settings.method None = the artifact's own default).
        "mapping": None
        if cfg.base
        else {
            "method": cfg.method or steer.meta.mapping,
            "range_quantiles": steer.stats.range_quantiles,
            "low": steer.stats.low,
            "high": steer.stats.high,
        },
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
    }
    if not cfg.base:
        w = np.array(sweep)
        desired = np.array([p["desired"] for p in points])
        front["controllability"] = controllability_report(w, desired, achieved)
    front.update(extra or {})
    missing = [g for p in points for g in GUARDS if g not in p.get("guards", {})]
    if guards and missing:
        raise ValueError(f"front lacks quality guards {sorted(set(missing))}")
    write_json(Path(cfg.out) / FRONT_FILE, front)
    return front


@dataclasses.dataclass
class CalibrateConfig(EvalConfig):
    prompts: str = field(
        DEFAULT.train_prompts,
        "calibration prompts, never the held-out or the final ones (files joined by commas)",
    )
    candidates: list = field(
        [
            [0.05, 0.95],
            [[0.05, 0.95], [0.15, 0.95]],
            [[0.05, 0.85], [0.15, 0.95]],
            [[0.05, 0.75], [0.15, 0.95]],
        ],
        "mapping ranges to try, each [lo, hi] or one [lo, hi] per reward",
    )
    points: int | None = field(6, "K evenly spaced weights per candidate sweep (2 objectives)")
    out: str = field(
        "runs/calibrate", "one sweep folder per candidate, the base point, calibration.json"
    )


PICK_RULE = (
    "fewest sweep points failing a quality guard (ric.quality.GUARD_BARS, against the base "
    "model on the same prompts), then highest worst-objective Spearman, then hypervolume"
)


def point_failures(front: dict, base_guards: dict | None) -> dict[str, list[str]]:
    """The guard bars each sweep point of a front misses, keyed by its weights ("null" for
    the one point of a base front)."""
    out = {}
    for p in front["points"]:
        failed = guard_failures(p["guards"], base_guards)
        w = p["weights"]
        if failed:
            out[json.dumps(None if w is None else np.round(w, 3).tolist())] = failed
    return out


def pick_range(fronts: list[dict], base_guards: dict | None = None) -> int:
    """The candidate whose sweep steers every objective best without spoiling the answers
    (PICK_RULE). Guards come first: a wide range that makes the extreme points loop or drift
    off topic reaches far on paper and fails the user there. Spearman next, because a range
    that leaves one objective flat is useless to a slider, however far the front reaches."""
    keys = [
        (
            -len(point_failures(f, base_guards)),
            round(min(f["controllability"]["spearman"]), 6),
            f["hypervolume"],
        )
        for f in fronts
    ]
    return max(range(len(fronts)), key=keys.__getitem__)


# The steering bar of a held-out sweep (issue 14): each weight's Spearman with its reward.
SPEARMAN_BAR = 0.9


def pick_model(fronts: dict[str, dict], base_guards: dict | None = None) -> str:
    """Which model to ship, by name, from held-out fronts measured on the same prompts: the
    fewest bars missed (each sweep point below a quality bar, each objective whose Spearman is
    below SPEARMAN_BAR), then the larger hypervolume (the issue's test of an online stage: above
    the offline-only front). A larger front that steers one slider out of order loses."""

    def missed(f: dict) -> int:
        flat = sum(s < SPEARMAN_BAR for s in f["controllability"]["spearman"])
        return len(point_failures(f, base_guards)) + flat

    keys = {n: (-missed(f), f["hypervolume"]) for n, f in fronts.items()}
    return max(keys, key=keys.__getitem__)


def calibrate_range(cfg: CalibrateConfig, steer: SteerableModel | None = None) -> dict:
    """Sweep each candidate mapping range on calibration prompts and pick one (pick_range),
    after one base-model point on the same prompts (the floor of the relative guards).

    Choosing the range on held-out prompts would tune it to the test; the default prompts are
    training prompts, so the held-out sweep afterwards stays an honest measurement."""
    if cfg.base or not cfg.candidates:
        raise ValueError("calibration needs a conditioned adapter and at least one candidate")
    steer = steer or load_for_eval(cfg)
    for cand in cfg.candidates:  # every candidate checked before the first sweep starts
        parse_range_quantiles(cand, len(steer.reward_names))
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(EvalConfig)}
    base_front = evaluate_front(EvalConfig(**{**base, "base": True, "out": f"{cfg.out}/base"}))
    base_guards = base_front["points"][0]["guards"]
    fronts = []
    for k, cand in enumerate(cfg.candidates):
        sub = EvalConfig(**{**base, "range_quantiles": cand, "out": f"{cfg.out}/range{k}"})
        fronts.append(evaluate_front(sub, steer))
    best = pick_range(fronts, base_guards)
    result = {
        "chosen": fronts[best]["mapping"],
        "rule": PICK_RULE,
        "prompts": cfg.prompts,
        "skip_prompts": cfg.skip_prompts,
        "max_prompts": cfg.max_prompts,
        "points": cfg.points,
        "base_guards": base_guards,
        "candidates": [
            {
                "range_quantiles": f["mapping"]["range_quantiles"],
                "method": f["mapping"]["method"],
                "hypervolume": f["hypervolume"],
                "spearman": f["controllability"]["spearman"],
                "guard_failures": point_failures(f, base_guards),
                "front": f"{cfg.out}/range{k}/{FRONT_FILE}",
            }
            for k, f in enumerate(fronts)
        ],
        "command": command_line(),
        "wall_seconds": round(sum(f["wall_seconds"] for f in [base_front, *fronts]), 1),
        "cpu_seconds": round(sum(f["cpu_seconds"] for f in [base_front, *fronts]), 1),
    }
    write_json(Path(cfg.out) / "calibration.json", result)
    return result


def evaluate_tag_contrast(cfg: EvalConfig, n_pairs: int = 48) -> dict:
    """The tag-contrast diagnostic of cfg.adapter on the rows of cfg.tag_contrast (a prepared
    dataset folder), in float32, for random pairs, for each prompt's farthest pair ("farthest")
    and for those pairs conditioned on their hidden sampling instructions ("instruction");
    written to cfg.out/tag_contrast.json."""
    from ric.data import load_dataset_rows
    from ric.sft import instruction_contrast, tag_contrast

    clock = RunClock(cfg.out)
    steer = load_for_eval(dataclasses.replace(cfg, dtype="float32", backend="transformers"))
    rows = load_dataset_rows(cfg.tag_contrast, steer.reward_names)
    args = (steer.model, steer.tokenizer, rows, steer.stats, steer.fmt, n_pairs, cfg.seed)
    result = tag_contrast(*args)
    result["farthest"] = tag_contrast(*args, pairing="farthest")
    # The same farthest pairs conditioned on their hidden sampling instructions instead:
    # with --base true, the signal the SFT has to learn to find in the tags.
    result["instruction"] = instruction_contrast(*args)
    result.update(
        adapter=cfg.adapter,
        data=cfg.tag_contrast,
        command=command_line(),
        **clock.stop(),
    )
    write_json(Path(cfg.out) / "tag_contrast.json", result)
    return result


def load_for_eval(cfg: EvalConfig) -> SteerableModel:
    from ric.models import load_adapter_meta

    if cfg.adapter is None:
        raise ValueError("evaluation needs an adapter folder (its ric.json names the rewards)")
    if cfg.base:
        return SteerableModel.load(
            meta=load_adapter_meta(cfg.adapter),
            model=cfg.model,
            dtype=cfg.dtype,
            backend=cfg.backend,
        )
    return SteerableModel.load(cfg.adapter, model=cfg.model, dtype=cfg.dtype, backend=cfg.backend)
