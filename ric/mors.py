"""Online RiC: multi-objective rejection sampling (MORS), docs/METHOD.md section 5.

Per iteration: sample prompts, draw desired rewards on the upper boundary of the reward box,
let the adapter answer, relabel each answer with the rewards it OBTAINED, keep answers with any
reward at or above its training quantile, mix with the filtered offline data, continue SFT of
the same adapter. As offline, only answers the model finished by itself are trained on.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ric.artifacts import (
    RicMeta,
    append_jsonl,
    atomic_dir,
    clean_stale_tmp,
    read_jsonl,
    write_json,
    write_jsonl,
)
from ric.config import field
from ric.data import chunk_seed, load_dataset_rows, read_prompts, score_rows, trainable
from ric.defaults import DEFAULT
from ric.generation import GenerationSettings
from ric.normalization import RewardStats
from ric.quality import distinct_n
from ric.runlog import RunClock, command_line, set_threads_from_env
from ric.sft import SFTRecipe, train_sft


@dataclasses.dataclass
class OnlineRecipe:
    data_dir: str = field("runs/data", "offline dataset folder (same rewards)")
    adapter: str = field("runs/sft/adapter", "adapter to improve (from the offline stage)")
    out_dir: str = field("runs/online", "output folder: iter_<k>/ per iteration, adapter/")
    iterations: int = field(1, "MORS iterations (the paper: 1-2)")
    n_prompts: int = field(1000, "prompts sampled (with replacement) per iteration")
    max_new_tokens: int = field(640, "generation cap (as the offline data's)")
    batch_size: int = field(16, "generation batch size")
    backend: str = field("auto", "generation backend (ric.models.BACKENDS, or auto)")
    chunk: int = field(64, "answers per checkpointed chunk (each sampled with its own seed)")
    temperature: float = field(0.7, "sampling temperature (released: 0.7)")
    top_p: float = field(0.9, "nucleus (released: 0.9)")
    repetition_penalty: float = field(
        1.0, "above 1 makes a repeated token less likely: loops of a small model then end"
    )
    keep_quantile: float = field(0.7, "keep a sample if ANY reward >= this quantile")
    target_quantiles: list | None = field(
        None,
        "draw the desired rewards inside these quantiles of the training rewards ([lo, hi], or "
        "one pair per reward; None: the adapter's own range, the paper's box)",
    )
    min_distinct_2: float = field(
        0.0,
        "drop answers whose own distinct word-pair share is below this: a small model asked "
        "for extreme scores loops, and those loops would be trained on (0: keep all)",
    )
    floor_quantiles: dict | None = field(
        None,
        "{reward: q}: drop answers (online and offline alike) whose raw score on that reward, "
        "conditioned on or not, is below its q-quantile over the offline answers. The ANY-reward "
        "filter keeps a short answer that dodges the question for its brevity, and the model "
        "learns the dodge; a relevance floor keeps only the brief answers that stay on topic",
    )
    floor_per_prompt: bool = field(
        False,
        "floors are each prompt's q-quantile over ITS OWN offline answers (prompts: data). One "
        "quantile over all answers drops whole kinds of request (poems, news) whose answers share "
        "fewer words with the prompt by nature, and passes an off-topic answer to an easy question",
    )
    offline_subsample: int = field(2000, "filtered offline rows mixed in per iteration")
    prompts: str | dict = field(
        DEFAULT.train_prompts,
        "prompt pool: one file, {file: share of the drawn prompts} (a small hand-written file "
        "is then not drowned by a large generated one), or 'data': the offline answers' prompts",
    )
    dtype: str = field("bfloat16", "generation dtype")
    sft: dict = field(
        {"learning_rate": 1e-5, "lr_scheduler": "constant", "max_steps": 4000},
        "SFTRecipe fields for the continued SFT (released: lr 1e-5 constant, 4k steps)",
    )
    seed: int = field(0, "random seed")


def draw_prompts(spec: str | dict | list, n: int, rng: np.random.Generator) -> list[str]:
    """n prompts drawn with replacement: uniformly from one file (or a list of prompts), or from
    {file: share}: each draw picks a file by its share, then a prompt uniformly within it."""
    if isinstance(spec, str | list):
        pool = read_prompts(spec) if isinstance(spec, str) else spec
        return [pool[i] for i in rng.integers(0, len(pool), n)]
    shares = np.array([float(v) for v in spec.values()])
    if not len(shares) or np.any(shares <= 0):
        raise ValueError(f"prompts: every file needs a share > 0, got {spec}")
    pools = [read_prompts(f) for f in spec]
    which = rng.choice(len(pools), size=n, p=shares / shares.sum())
    return [pools[k][rng.integers(len(pools[k]))] for k in which]


def frontier_targets(low, high, n: int, rng: np.random.Generator) -> np.ndarray:
    """Desired rewards on the upper boundary of the reward box (docs/METHOD.md 5.2): draw each r_i
    uniformly in [low_i, high_i], then raise every dimension except the smallest draw's to
    high_i."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    r = rng.uniform(low, high, size=(n, low.size))
    keep = np.argmin((r - low) / (high - low), axis=1)
    out = np.broadcast_to(high, r.shape).copy()
    out[np.arange(n), keep] = r[np.arange(n), keep]
    return out


def keep_mask(z: np.ndarray, stats: RewardStats, q: float = 0.7) -> np.ndarray:
    """MORS filter: True where ANY normalized reward reaches its training q-quantile."""
    return np.any(z >= stats.quantile(q), axis=1)


def floor_values(reference: list[dict], floors: dict, per_prompt: bool = False) -> dict:
    """{reward: its q-quantile over the reference rows} for floors {reward: q}, or with
    per_prompt {reward: {prompt: the q-quantile over that prompt's rows}}; rows carry `raw` as a
    dict."""
    for name, q in floors.items():
        if not 0 <= q <= 1:
            raise ValueError(f"floor_quantiles: {name}'s quantile {q} is not in [0, 1]")
    if not per_prompt:
        return {
            n: float(np.quantile([r["raw"][n] for r in reference], q)) for n, q in floors.items()
        }
    by_prompt: dict[str, list[dict]] = {}
    for r in reference:
        by_prompt.setdefault(r["prompt"], []).append(r)
    return {
        n: {p: float(np.quantile([r["raw"][n] for r in rs], q)) for p, rs in by_prompt.items()}
        for n, q in floors.items()
    }


def above_floors(rows: list[dict], values: dict) -> list[dict]:
    """The rows whose raw score on each floored reward reaches its floor value (its prompt's,
    for per-prompt floors)."""

    def floor(value, row):
        return value[row["prompt"]] if isinstance(value, dict) else value

    return [r for r in rows if all(r["raw"][n] >= floor(v, r) for n, v in values.items())]


def sample_iteration(
    recipe: OnlineRecipe, adapter: str, it: int, out: Path, clock, pool: str | dict | list
) -> None:
    """Append the adapter's answers at frontier targets to out/samples.jsonl, chunk by chunk
    (fixed chunks, one seed each: a resumed iteration regenerates exactly the missing rows).
    `pool`: the prompts to draw from (draw_prompts)."""
    from ric.steering import SteerableModel

    meta = RicMeta.load(adapter)
    stats = RewardStats.from_dict(meta.stats)
    if recipe.target_quantiles:
        stats = stats.with_range(recipe.target_quantiles)
    rng = np.random.default_rng(recipe.seed + it)
    prompts = draw_prompts(pool, recipe.n_prompts, rng)
    targets = frontier_targets(stats.low, stats.high, recipe.n_prompts, rng)
    done = {r["key"] for r in read_jsonl(out / "samples.jsonl")}
    starts = range(0, recipe.n_prompts, recipe.chunk)
    todo = [s for s in starts if any(f"{it}:{i}" not in done for i in range(s, s + recipe.chunk))]
    if not todo:
        return
    steer = SteerableModel.load(adapter, dtype=recipe.dtype, backend=recipe.backend)
    settings = GenerationSettings(
        recipe.max_new_tokens,
        recipe.temperature,
        recipe.top_p,
        repetition_penalty=recipe.repetition_penalty,
    )
    for start in tqdm(todo, desc=f"MORS {it} sampling", unit="chunk"):
        idx = range(start, min(start + recipe.chunk, recipe.n_prompts))
        inputs = [steer.prompt(prompts[i], targets[i]) for i in idx]
        outs = steer.complete(
            inputs,
            settings,
            seed=chunk_seed(recipe.seed + it, start // recipe.chunk),
            batch_size=recipe.batch_size,
            progress=False,
        )
        rows = [
            {
                "key": f"{it}:{i}",
                "prompt": prompts[i],
                "desired": targets[i].tolist(),
                "response": o.text,
                "n_tokens": int(o.n_tokens),
                "finished": bool(o.finished),
            }
            for i, o in zip(idx, outs, strict=True)
        ]
        append_jsonl(out / "samples.jsonl", [r for r in rows if r["key"] not in done])
        clock.tick()


def mors_iteration(
    recipe: OnlineRecipe, adapter: str, it: int, kept_so_far: list[dict]
) -> tuple[str, list[dict]]:
    """Generate at frontier targets, relabel with obtained rewards, filter, continue SFT."""
    out = Path(recipe.out_dir) / f"iter_{it}"
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(out)
    clock = RunClock(out)
    meta = RicMeta.load(adapter)
    stats = RewardStats.from_dict(meta.stats)
    # The offline rows (and the floors they set) first: a data set that lacks a floored
    # reward, or a bad quantile, fails before the sampling, not after it.
    floors = recipe.floor_quantiles or {}
    if recipe.floor_per_prompt and recipe.prompts != "data":
        raise ValueError(
            "floor_per_prompt needs prompts: data (a prompt's floor comes from its own offline "
            f"answers), got prompts={recipe.prompts!r}"
        )
    names = list(meta.reward_names) + [n for n in floors if n not in meta.reward_names]
    offline = load_dataset_rows(recipe.data_dir, names)
    for r in offline:
        r["raw"] = dict(zip(names, r["raw"], strict=True))
    floor_at = floor_values(offline, floors, recipe.floor_per_prompt)
    pool = (
        list(dict.fromkeys(r["prompt"] for r in offline))
        if recipe.prompts == "data"
        else recipe.prompts
    )
    sample_iteration(recipe, adapter, it, out, clock, pool)
    samples = read_jsonl(out / "samples.jsonl")
    finished = [r for r in samples if trainable(r)]
    rows = [r for r in finished if distinct_n([r["response"]], 2) >= recipe.min_distinct_2]
    looped = len(finished) - len(rows)
    score_rows(rows, names, out / "scores.jsonl")
    scores = {r["key"]: r["raw"] for r in read_jsonl(out / "scores.jsonl")}
    for r in rows:  # hindsight relabeling: the rewards OBTAINED, not the ones asked for
        r["raw"] = scores[r["key"]]
    on_topic, offline_on_topic = above_floors(rows, floor_at), above_floors(offline, floor_at)
    below, offline_below = len(rows) - len(on_topic), len(offline) - len(offline_on_topic)
    rows, offline = on_topic, offline_on_topic
    for r in rows + offline:  # from here on, the conditioned rewards only, in order
        r["raw"] = [r["raw"][n] for n in meta.reward_names]
    kept = []
    if rows:
        z = stats.normalize(np.array([r["raw"] for r in rows]))
        mask = keep_mask(z, stats, recipe.keep_quantile)
        kept = [r for r, k in zip(rows, mask, strict=True) if k]
    kept_so_far = kept_so_far + kept

    zo = stats.normalize(np.array([r["raw"] for r in offline]))
    good = [
        r for r, k in zip(offline, keep_mask(zo, stats, recipe.keep_quantile), strict=True) if k
    ]
    random.Random(recipe.seed + it).shuffle(good)
    mix = good[: recipe.offline_subsample] + kept_so_far

    sft_fields = {
        **meta.extra.get("recipe", {}),
        **recipe.sft,
        "out_dir": str(out / "sft"),
        "init_adapter": adapter,
        "data_dir": recipe.data_dir,
    }
    # Generation and scoring cost, over every attempt; the SFT's own is in sft/train_log.json.
    cost = clock.stop()
    new_adapter = train_sft(SFTRecipe(**sft_fields), rows=mix, stats=stats)
    write_jsonl(out / "kept.jsonl", kept)
    write_json(
        out / "mors.json",
        {
            "command": command_line(),
            "generated": len(samples),
            "finished": sum(bool(r.get("finished", True)) for r in samples),
            "trainable": len(finished),
            "looped": looped,
            "floors": floor_at,
            "below_floor": below,
            "offline_below_floor": offline_below,
            "kept": len(kept),
            "kept_total": len(kept_so_far),
            "offline_kept": len(good),
            "mixed": len(mix),
            "quantile_thresholds": stats.quantile(recipe.keep_quantile).tolist(),
            **cost,
        },
    )
    return str(new_adapter), kept_so_far


def run_online(recipe: OnlineRecipe) -> Path:
    """Every iteration (finished ones reused), then OUT/adapter = the last one's, whole."""
    set_threads_from_env()
    adapter, kept = recipe.adapter, []
    for it in range(1, recipe.iterations + 1):
        done = Path(recipe.out_dir) / f"iter_{it}" / "mors.json"
        if done.exists():  # finished on an earlier run: reuse its adapter and kept samples
            adapter = str(done.parent / "sft" / "adapter")
            kept += read_jsonl(done.parent / "kept.jsonl")
            continue
        adapter, kept = mors_iteration(recipe, adapter, it, kept)
    final = Path(recipe.out_dir) / "adapter"
    with atomic_dir(final) as tmp:
        for f in Path(adapter).iterdir():
            (tmp / f.name).write_bytes(f.read_bytes())
    return final
