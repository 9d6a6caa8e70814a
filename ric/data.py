"""Offline RiC data (docs/METHOD.md section 2): the base model's own answers, scored by every reward.

`prepare_dataset` samples several answers per training prompt at varied temperatures, each
under a hidden instruction drawn from assets/prompts/instructions.txt (in the system turn of
the SAMPLING prompt only) and, optionally, a hidden word bias (a logit bias towards positive
words), scores them with every configured reward and fits RewardStats.
Every training response is exactly the text the model generated, from its first token to its
own end-of-text: no text written by the project, no cuts; answers that hit the token cap are
kept in samples.jsonl (with n_tokens and finished=False) but never trained on.

Resumable and reproducible: the jobs and their chunks are fixed by the recipe, each chunk is
sampled with its own seed, so a rerun after a kill regenerates exactly the missing rows.
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
    clean_stale_tmp,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)
from ric.conditioning import ConditioningFormat, format_plain_prompt
from ric.config import field
from ric.defaults import DEFAULT
from ric.generation import GenerationSettings, eos_ids, is_degenerate
from ric.normalization import RewardStats
from ric.quality import guard_metrics
from ric.rewards import get_reward_fn, positive_word_ids
from ric.runlog import RunClock, command_line, set_threads_from_env

NO_INSTRUCTION = "(none)"
# The hidden sampling pushes a row may carry (absent = 0): each a logit bias on a fixed set of
# tokens (bias_token_ids), in the sampler only.
BIASES = ("word_bias", "end_bias")


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with '#' are skipped. "a.txt,b.txt"
    reads several files in turn (hand-written calibration sets are small on their own)."""
    if isinstance(path, str) and "," in path:
        return [p for part in path.split(",") for p in read_prompts(part.strip())]
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    prompts = [ln.strip() for ln in path.read_text().splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ValueError(f"prompt file {path} holds no prompts")
    return prompts


def read_instructions(path: str | Path) -> list[str]:
    """Hidden sampling instructions, one per line ("(none)" = no instruction -> "")."""
    return [("" if p == NO_INSTRUCTION else p) for p in read_prompts(path)]


@dataclasses.dataclass
class PrepareConfig:
    out_dir: str = field("runs/data", "output folder (resumable: rerun to continue)")
    model: str | None = field(None, "base model id or path; None = embedded SmolLM2-135M")
    prompts: str = field(DEFAULT.train_prompts, "training prompts, one per line")
    hf_dataset: str | None = field(
        None, "instead of sampling: HH-RLHF style dataset (chosen/rejected), a path or hub id"
    )
    hf_split: str = field("train", "split of hf_dataset")
    max_prompts: int | None = field(None, "use only the first N prompts (or dataset rows)")
    samples_per_prompt: int = field(4, "answers sampled per prompt")
    temperatures: list = field([0.7, 1.0], "sampling temperatures, cycled over a prompt's samples")
    top_p: float = field(0.95, "nucleus while sampling")
    repetition_penalty: float = field(
        1.0, "above 1 makes a repeated token less likely: loops of a small model then end"
    )
    instructions: str | None = field(
        DEFAULT.instructions,
        "hidden instructions, one per line, one drawn per sample into the system turn of the "
        "sampling prompt (never the training prompt); None: plain prompts only",
    )
    word_bias: list = field(
        [0.0],
        "hidden push towards positive words while sampling (a logit bias on "
        "ric.rewards.positive_word_ids), cycled over a prompt's samples like temperatures; "
        "0 = none. Never in the training prompt: the answers stay the model's own tokens",
    )
    end_bias: list = field(
        [0.0],
        "hidden push towards ending (a logit bias on the end-of-text tokens) while sampling, "
        "cycled over a prompt's samples like word_bias; 0 = none. The answer still ends only "
        "where the model's own end-of-text was drawn, so it ends at a sentence end, not a cut",
    )
    max_new_tokens: int = field(
        640, "token cap: high enough that nearly every answer ends by itself (data.json)"
    )
    batch_size: int = field(16, "generation batch size")
    backend: str = field("auto", "generation backend (ric.models.BACKENDS, or auto)")
    rewards: list = field(list(DEFAULT.candidate_rewards), "reward names to score with")
    range_source: str = field("data", "mapping range: 'data' (quantiles) or 'gaussian'")
    dtype: str = field("bfloat16", "generation dtype")
    chunk: int = field(64, "answers per checkpointed chunk (each sampled with its own seed)")
    seed: int = field(0, "random seed")

    def __post_init__(self) -> None:
        if int(self.samples_per_prompt) < 1 or not self.temperatures:
            raise ValueError("samples_per_prompt must be >= 1 and temperatures non-empty")
        for name in BIASES:
            biases = getattr(self, name)
            try:
                ok = bool(biases) and all(np.isfinite(float(b)) for b in biases)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"{name} must be a non-empty list of numbers, got {biases}")
        if int(self.chunk) < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")


def _split_hh(text: str) -> tuple[str, str]:
    """'...\\n\\nAssistant: response' -> (prompt ending in 'Assistant:', response)."""
    marker = "\n\nAssistant:"
    idx = text.rfind(marker)
    if idx < 0:
        raise ValueError("HH-RLHF text without '\\n\\nAssistant:' turn")
    return text[: idx + len(marker)], text[idx + len(marker) :].strip()


def load_preference_dataset(source: str, split: str = "train", limit: int | None = None):
    """(prompt, response) pairs from chosen AND rejected of an HH-RLHF style dataset."""
    import datasets

    path = Path(source)
    if path.is_file():
        ds = datasets.load_dataset("json", data_files=str(path), split="train")
    elif path.is_dir() and (path / "dataset_info.json").exists():
        ds = datasets.load_from_disk(str(path))
    else:
        ds = datasets.load_dataset(source, split=split)
    missing = {"chosen", "rejected"} - set(ds.column_names)
    if missing:
        raise ValueError(f"{source} lacks columns {sorted(missing)} (needs chosen/rejected)")
    rows = []
    for i, ex in enumerate(ds):
        if limit is not None and i >= limit:
            break
        for kind in ("chosen", "rejected"):
            prompt, response = _split_hh(ex[kind])
            rows.append({"key": f"{i}:{kind}", "prompt": prompt, "response": response})
    return rows


def sampling_jobs(cfg: PrepareConfig) -> list[dict]:
    """Every answer the recipe asks for, in a fixed order: prompt i, sample k, its temperature
    and hidden instruction (drawn from a seed of its own, so the plan never depends on what a
    previous attempt finished)."""
    prompts = read_prompts(cfg.prompts)[: cfg.max_prompts]
    instructions = read_instructions(cfg.instructions) if cfg.instructions else [""]
    jobs = []
    for i, prompt in enumerate(prompts):
        for k in range(cfg.samples_per_prompt):
            rng = random.Random(f"{cfg.seed}:{i}:{k}")
            job = {
                "key": f"{i}:{k}",
                "prompt": prompt,
                "instruction": rng.choice(instructions),
                "temperature": float(cfg.temperatures[k % len(cfg.temperatures)]),
            }
            for name in BIASES:
                biases = getattr(cfg, name)
                bias = float(biases[k % len(biases)])
                if bias:  # absent = 0, so rows sampled before the option existed stay valid
                    job[name] = bias
            jobs.append(job)
    return jobs


def _setting(job: dict) -> tuple[float, float, float]:
    return job["temperature"], *(job.get(name, 0.0) for name in BIASES)


def sampling_groups(chunk: list[dict]) -> list[tuple[int, tuple[float, float, float], list[dict]]]:
    """(group index, (temperature, word bias, end bias), jobs) of one chunk: the jobs that
    share one generate call. Without biases the groups are the chunk's temperatures in order,
    so their seeds (chunk_seed(.., group)) are those of data sampled before biases existed."""
    settings = sorted({_setting(j) for j in chunk})
    return [(g, s, [j for j in chunk if _setting(j) == s]) for g, s in enumerate(settings)]


def bias_token_ids(tokenizer, used) -> dict[str, list[int]]:
    """The tokens each bias named in `used` is added to: whole positive words of VADER's
    lexicon, the end-of-text ids. The sampler and its targets (ric.distill) both take them
    from here, so they cannot disagree."""
    pick = {"word_bias": positive_word_ids, "end_bias": lambda tok: sorted(eos_ids(tok))}
    return {name: pick[name](tokenizer) for name in BIASES if name in used}


def sampling_bias(word_bias: float, end_bias: float, word_ids, end_ids) -> dict | None:
    """GenerationSettings.logit_bias for one group: positive words and end-of-text tokens."""
    bias = {
        **(dict.fromkeys(word_ids, float(word_bias)) if word_bias else {}),
        **(dict.fromkeys(end_ids, float(end_bias)) if end_bias else {}),
    }
    return bias or None


def chunk_seed(seed: int, chunk: int, group: int = 0) -> int:
    """The sampling seed of one chunk (and temperature group): a resumed run redraws it."""
    return (seed * 1_000_003 + chunk * 101 + group) % 2**31


def sampling_meta(model: str | None, rewards: list[str]) -> RicMeta:
    """Metadata for the base model as a plain sampler: identity statistics (never used to
    normalize anything here), the default chat format."""
    n = len(rewards)
    stats = RewardStats(rewards, [0.0] * n, [1.0] * n, [-1.0] * n, [1.0] * n)
    return RicMeta(
        base_model=model or DEFAULT.model,
        reward_names=list(rewards),
        stats=stats.to_dict(),
        conditioning=ConditioningFormat().to_dict(),
    )


def sample_responses(cfg: PrepareConfig, out: Path, clock: RunClock | None = None) -> None:
    """Append the base model's answers to out/samples.jsonl, chunk by chunk; chunks already
    written are skipped and a partly written one is regenerated with its seed, missing rows
    appended."""
    from ric.steering import SteerableModel

    jobs = sampling_jobs(cfg)
    done = {r["key"] for r in read_jsonl(out / "samples.jsonl")}
    chunks = [jobs[s : s + cfg.chunk] for s in range(0, len(jobs), cfg.chunk)]
    todo = [(c, ch) for c, ch in enumerate(chunks) if any(j["key"] not in done for j in ch)]
    if not todo:
        return
    steer = SteerableModel.load(
        meta=sampling_meta(cfg.model, list(cfg.rewards)),
        model=cfg.model,
        dtype=cfg.dtype,
        backend=cfg.backend,
    )
    ids = bias_token_ids(steer.tokenizer, [n for n in BIASES if any(getattr(cfg, n))])
    missing = sum(j["key"] not in done for _, ch in todo for j in ch)
    bar = tqdm(total=missing, desc="sampling answers", unit="answer")
    for c, chunk in todo:
        rows = {}
        for g, (temp, word_bias, end_bias), group in sampling_groups(chunk):
            if all(j["key"] in done for j in group):
                continue  # e.g. a prompt's earlier samples, when samples_per_prompt grew
            inputs = [
                format_plain_prompt(j["prompt"], steer.tokenizer, system=j["instruction"] or None)
                for j in group
            ]
            settings = GenerationSettings(
                cfg.max_new_tokens,
                temp,
                cfg.top_p,
                repetition_penalty=cfg.repetition_penalty,
                logit_bias=sampling_bias(
                    word_bias, end_bias, ids.get("word_bias", []), ids.get("end_bias", [])
                ),
            )
            outs = steer.complete(
                inputs,
                settings,
                seed=chunk_seed(cfg.seed, c, g),
                batch_size=cfg.batch_size,
                progress=False,
            )
            for j, o in zip(group, outs, strict=True):
                # Exactly the decoded tokens (the engines trim surrounding whitespace):
                # nothing added, nothing cut.
                rows[j["key"]] = {
                    **j,
                    "response": o.text,
                    "n_tokens": int(o.n_tokens),
                    "finished": bool(o.finished),
                }
        append_jsonl(out / "samples.jsonl", [rows[j["key"]] for j in chunk if j["key"] not in done])
        bar.update(sum(j["key"] not in done for j in chunk))
        if clock:
            clock.tick()
    bar.close()


def trainable(row: dict) -> bool:
    """An answer the model finished by itself and that is not empty or degenerate."""
    return bool(row.get("finished", True)) and not is_degenerate(row["response"])


def score_rows(rows: list[dict], names: list[str], out_file: Path, chunk: int = 256) -> None:
    """Append {"key", "raw": {name: value}} for rows not yet in out_file (resumable)."""
    done = {r["key"] for r in read_jsonl(out_file)}
    todo = [r for r in rows if r["key"] not in done]
    fns = {n: get_reward_fn(n) for n in names}
    for start in tqdm(range(0, len(todo), chunk), desc="scoring", unit="chunk", disable=not todo):
        part = todo[start : start + chunk]
        prompts = [reward_prompt(r["prompt"]) for r in part]
        responses = [r["response"] for r in part]
        scores = {n: fn(prompts, responses) for n, fn in fns.items()}
        append_jsonl(
            out_file,
            [
                {"key": r["key"], "raw": {n: float(scores[n][i]) for n in names}}
                for i, r in enumerate(part)
            ],
        )


def reward_prompt(prompt: str) -> str:
    """What the reward models see: the plain user request, without HH scaffolding or tags."""
    return prompt.removeprefix("\n\nHuman:").removesuffix("\n\nAssistant:").strip()


def length_report(samples: list[dict], cap: int) -> dict:
    """How the answers ended: the share that ended by end-of-text (the cap is high enough when
    this is >= 0.9), and quantiles of their token counts."""
    n = np.array([r["n_tokens"] for r in samples if "n_tokens" in r])
    if not len(n):
        return {}
    return {
        "max_new_tokens": cap,
        "share_finished": round(float(np.mean([r["finished"] for r in samples])), 4),
        "n_tokens_quantiles": {
            str(q): float(np.quantile(n, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
        },
    }


def prepare_dataset(cfg: PrepareConfig) -> Path:
    """Build out_dir/dataset.jsonl + reward_stats.json + data.json; rerun to resume."""
    set_threads_from_env()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(out)
    clock = RunClock(out)
    lengths = {}
    if cfg.hf_dataset:
        rows = load_preference_dataset(cfg.hf_dataset, cfg.hf_split, cfg.max_prompts)
        source = {"hf_dataset": cfg.hf_dataset, "split": cfg.hf_split}
    else:
        sample_responses(cfg, out, clock)
        samples = read_jsonl(out / "samples.jsonl")
        order = {j["key"]: i for i, j in enumerate(sampling_jobs(cfg))}
        samples.sort(key=lambda r: order[r["key"]])
        rows = [r for r in samples if trainable(r)]
        lengths = length_report(samples, cfg.max_new_tokens)
        source = {
            "prompts": cfg.prompts,
            "model": cfg.model or DEFAULT.model,
            "instructions": read_instructions(cfg.instructions) if cfg.instructions else [],
            "n_samples": len(samples),
        }
    score_rows(rows, list(cfg.rewards), out / "scores.jsonl")
    scores = {r["key"]: r["raw"] for r in read_jsonl(out / "scores.jsonl")}
    rows = [r for r in rows if r["key"] in scores and r["response"].strip()]
    for r in rows:
        r["raw"] = [scores[r["key"]][n] for n in cfg.rewards]
    raw = np.array([r["raw"] for r in rows])
    stats = RewardStats.fit(raw, list(cfg.rewards), range_source=cfg.range_source)
    stats.save(out)
    write_jsonl(out / "dataset.jsonl", rows)
    cost = clock.stop()
    write_json(
        out / "data.json",
        {
            "config": dataclasses.asdict(cfg),
            "command": command_line(),
            "source": source,
            "n_rows": len(rows),
            "reward_names": list(cfg.rewards),
            "lengths": lengths,
            # The training responses' own openings, echo and variety (ric.quality): stock
            # phrases in the data would become stock phrases of the model.
            "guards": guard_metrics(
                [reward_prompt(r["prompt"]) for r in rows], [r["response"] for r in rows]
            ),
            # Spearman correlation of the rewards over the data: the most negative pair is the
            # pair that conflicts most (train/measure_rewards.py tabulates it).
            "reward_correlation": spearman_matrix(stats.normalize(raw)).tolist(),
            **cost,
        },
    )
    return out


def spearman_matrix(x: np.ndarray) -> np.ndarray:
    """Spearman correlation between the columns of x (tied values share their mean rank)."""
    from scipy.stats import rankdata

    return np.corrcoef(rankdata(np.asarray(x, float), axis=0), rowvar=False)


def reward_measures(rows: list[dict], names: list[str]) -> dict:
    """How each reward spreads over the model's own answers, and how the rewards conflict.

    - spread: std of the raw reward, and its 10-90% quantile range;
    - within_prompt: the share of its variance left after removing each prompt's mean, i.e.
      what the model moves with its own words for a fixed request (a reward that only
      follows the prompt cannot be steered by tags);
    - spearman / spearman_within_prompt: pairwise rank correlations over all answers and over
      the prompt-centered values (negative = conflict: raising one tends to lower the other);
    - length_spearman: each reward's rank correlation with the answer's length in tokens, all
      answers / within prompts (rows with n_tokens only): a reward that mostly tracks length
      asks a longer or shorter answer of the model, whatever its name.
    """
    raw = np.array([r["raw"] for r in rows], float)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["prompt"], []).append(i)
    centered = _center(raw, groups)
    multi = [i for idx in groups.values() if len(idx) > 1 for i in idx]
    var = raw[multi].var(axis=0)
    within = np.where(var > 0, centered[multi].var(axis=0) / np.where(var > 0, var, 1), 0.0)
    return {
        "names": list(names),
        "n_answers": len(rows),
        "n_prompts": len(groups),
        "std": raw.std(axis=0).round(4).tolist(),
        "q10_q90": [
            np.quantile(raw[:, i], [0.1, 0.9]).round(4).tolist() for i in range(len(names))
        ],
        "within_prompt": within.round(3).tolist(),
        "spearman": spearman_matrix(raw).round(3).tolist(),
        "spearman_within_prompt": spearman_matrix(centered[multi]).round(3).tolist(),
        "length_spearman": _length_spearman(rows, raw, centered, groups, multi),
    }


def _center(x: np.ndarray, groups: dict[str, list[int]]) -> np.ndarray:
    """x minus each prompt's mean (rows of a prompt = one group of indices)."""
    out = x.copy()
    for idx in groups.values():
        out[idx] -= x[idx].mean(axis=0)
    return out


def _length_spearman(rows, raw, centered, groups, multi) -> list[list[float]] | None:
    if not all("n_tokens" in r for r in rows):
        return None
    n = np.array([r["n_tokens"] for r in rows], float)
    n_centered = _center(n, groups)
    with np.errstate(invalid="ignore"):  # a reward constant within prompts has no rank order
        every = spearman_matrix(np.column_stack([raw, n]))[-1, :-1]
        within = spearman_matrix(np.column_stack([centered[multi], n_centered[multi]]))[-1, :-1]
    pairs = np.column_stack([every, within]).round(3).tolist()
    return [[None if np.isnan(x) else x for x in pair] for pair in pairs]


def choose_pair(
    measures: dict, min_within: float = 0.3, min_range: float = 0.05
) -> tuple[str, str]:
    """The pair to condition on: among rewards that spread (a 10-90% range of at least
    `min_range` in the reward's own units; every candidate text reward lies in [0, 1] or
    [-1, 1]) and that the model moves with its own words (at least `min_within` of their
    variance within a prompt), the pair that conflicts most within prompts (lowest Spearman)."""
    names, within = measures["names"], measures["within_prompt"]
    spread = [hi - lo for lo, hi in measures["q10_q90"]]
    rho = np.array(measures["spearman_within_prompt"])
    ok = [i for i, w in enumerate(within) if w >= min_within and spread[i] >= min_range]
    pairs = [(rho[i, j], i, j) for a, i in enumerate(ok) for j in ok[a + 1 :]]
    if not pairs:
        raise ValueError(
            f"fewer than two rewards spread and vary within prompts: within {within}, "
            f"10-90% ranges {spread} ({names})"
        )
    _, i, j = min(pairs)
    return names[i], names[j]


def load_dataset_rows(data_dir: str | Path, rewards: list[str]) -> list[dict]:
    """Rows of a prepared dataset with `raw` restricted to `rewards`, in that order."""
    data_dir = Path(data_dir)
    path = data_dir / "dataset.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run train/prepare_dataset.py first")
    rows = read_jsonl(path)
    names = read_json(data_dir / "data.json")["reward_names"]
    missing = [n for n in rewards if n not in names]
    if missing:
        raise ValueError(f"dataset in {data_dir} was not scored with {missing}; it has {names}")
    cols = [names.index(n) for n in rewards]
    for r in rows:
        r["raw"] = [r["raw"][c] for c in cols]
    return rows
