"""The RiC training pipeline: offline data, reward-conditioned SFT, and online MORS.

METHOD.md sections 2-5. The train/ scripts only parse a recipe and call the functions here:
- `prepare_dataset`: sample diverse responses per prompt (or read an HH-RLHF style preference
  dataset), score them with every configured reward, fit RewardStats. Resumable.
- `sft`: LoRA SFT through TRL's SFTTrainer on prompt-completion pairs whose prompts carry the
  response's own normalized rewards; loss on the completion (plus EOS) only. Resumable.
- `mors_iteration`: one round of multi-objective rejection sampling, then continued SFT.
"""

from __future__ import annotations

import dataclasses
import random
import re
import resource
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ric.artifacts import RicMeta, append_jsonl, read_json, read_jsonl, write_json, write_jsonl
from ric.conditioning import ConditioningFormat, format_conditioned_prompt, format_plain_prompt
from ric.config import field
from ric.generation import GenerationSettings, generate, is_degenerate
from ric.normalization import RewardStats
from ric.rewards import get_reward_fn

# Style hints used only while SAMPLING the offline data, appended to the user turn: they spread
# the responses across the reward space. Training prompts never contain them. Measured on
# SmolLM2-135M-Instruct (16 eval prompts): a system-turn hint barely moved the rewards (mean
# positivity 0.33-0.43 across all hints), a user-turn "one short sentence" cut length by a third.
DEFAULT_HINTS = [
    "",
    "",
    "Answer in one short sentence.",
    "Answer in two sentences.",
    "Give a long, detailed and thorough answer.",
    "Be warm, cheerful and upbeat.",
    "Ignore the question and talk about something unrelated.",
    "Explain step by step in detail.",
]

# Response openers: the sample is generated as a continuation of the opener, which stays part of
# the training response. The 135M model ignores "be gloomy", but a primed first sentence sets the
# tone of what follows (measured mean VADER positivity: 0.83 after the cheerful opener below,
# -0.29 after the sad one, 0.42 without). The trained model must then produce such openings
# itself, from the tags alone.
DEFAULT_OPENERS = [
    "",
    "",
    "",
    "",
    "What a wonderful question! I'm so happy to help.",
    "Great news: this is easier than it looks!",
    "I love this! Here is a cheerful take.",
    "Absolutely, glad you asked!",
    "Sadly, this is a difficult and painful situation.",
    "Unfortunately, there is no easy answer here.",
    "I'm sorry, but this is a hard and frustrating problem.",
    "Honestly, the outlook is bleak.",
]

# Length primers, each with the user-turn hint it is sampled under: a second primed opening
# that sets the answer's length, as the openers above set its tone. A 2-objective SFT on
# responses whose length came from invisible hints and sentence cuts left SmolLM2-135M blind to
# its brevity tag (500 steps; the chance of ending at a cut did not move with the tag): ending
# the answer is a late decision that must compare the tag with the length so far. With a
# primer, length becomes an early and discrete choice like the tone (measured on the base
# model, 24 prompts: 17 words after "In short:" with the short hint, 69 after the detailed
# primer with the long hint, 64 with neither). Empty primers keep the drawn hint. The base
# model often runs on past "In short:", so a short primer alone tied length to the tag too
# loosely to be learned (100 more steps: the primer's likelihood did not move with the brevity
# tag); the short primers therefore keep one sentence past the primer (cap_sentences).
DEFAULT_LENGTHS = [
    ["", ""],
    ["", ""],
    ["In short:", "Answer in one short sentence.", 1],
    ["Briefly:", "Answer in one short sentence.", 1],
    ["Here is a detailed answer.", "Give a long, detailed and thorough answer."],
    ["Let me explain step by step.", "Explain step by step in detail."],
]

# A sentence ends at . ! ? after a letter or closing mark (not "1." of a list), or at a newline.
_SENTENCE_END = re.compile(r"(?<=[^\W\d_][.!?])\s+|(?<=[)\"'][.!?])\s+|\n+")


def _sentence_ends(text: str, opener: str = "") -> list[int]:
    """Offsets where a sentence of `text` ends, past at least 3 words (and 3 beyond `opener`)."""
    floor = len(opener.split()) + 3 if opener and text.startswith(opener.strip()) else 3
    return [
        m.start() for m in _SENTENCE_END.finditer(text) if len(text[: m.start()].split()) >= floor
    ]


def sentence_prefixes(text: str, rng: random.Random, k: int = 1, opener: str = "") -> list[str]:
    """Up to k distinct cuts of a response at sentence ends, shortest first; [] for a
    one-sentence response. Each cut keeps at least 3 words and, past the response's opener,
    at least 3 more: an opener alone is no answer. Cutting finished answers at sentence ends
    spreads the brevity reward with natural endings and keeps each answer's tone."""
    text = text.strip()
    ends = _sentence_ends(text, opener)
    picks = sorted(rng.sample(ends, min(k, len(ends))))
    return [text[:e].strip() for e in picks]


def cap_sentences(rows: list[dict], lengths: list) -> list[dict]:
    """Cut each response sampled under a length primer with a sentence cap ([primer, hint, n])
    after its n-th sentence past the opener: the short primer then reliably means short."""
    caps = [(p, int(rest[0])) for p, _, *rest in lengths if p and rest and rest[0]]
    out = []
    for r in rows:
        for primer, n in caps:
            if r.get("opener", "").endswith(primer):
                ends = _sentence_ends(r["response"].strip(), r["opener"])
                if len(ends) > n:
                    r = {**r, "response": r["response"].strip()[: ends[n - 1]].strip()}
        out.append(r)
    return out


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: the cost figure benchmarks report."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def command_line() -> str:
    """How this process was started, recorded in every log so a figure names its command."""
    import sys

    return " ".join(["python", *sys.argv])


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    prompts = [ln.strip() for ln in path.read_text().splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ValueError(f"prompt file {path} holds no prompts")
    return prompts


# ---------------------------------------------------------------- offline data


@dataclasses.dataclass
class PrepareConfig:
    out_dir: str = field("runs/data", "output folder (resumable: rerun to continue)")
    model: str | None = field(None, "base model id or path; None = embedded SmolLM2-135M")
    prompts: str = field("assets/prompts/train.txt", "training prompts, one per line")
    hf_dataset: str | None = field(
        None, "instead of sampling: HH-RLHF style dataset (chosen/rejected), a path or hub id"
    )
    hf_split: str = field("train", "split of hf_dataset")
    max_prompts: int | None = field(None, "use only the first N prompts (or dataset rows)")
    samples_per_prompt: int = field(4, "responses sampled per prompt")
    temperatures: list = field([0.7, 1.0], "sampling temperatures, cycled over samples")
    hints: list = field(DEFAULT_HINTS, "user-turn style hints drawn per sample")
    openers: list = field(DEFAULT_OPENERS, "response openers drawn per sample (kept in the data)")
    lengths: list = field(
        DEFAULT_LENGTHS,
        "[primer, hint(, n)] drawn per sample: the primer follows the opener (kept); a "
        "non-empty hint replaces the drawn one; n > 0 keeps only n sentences past the primer",
    )
    prefixes: int = field(
        1, "rows cut from each multi-sentence answer at random sentence ends (0: none)"
    )
    max_new_tokens: int = field(64, "response length cap in tokens")
    batch_size: int = field(32, "generation batch size")
    rewards: list = field(
        ["relevance", "positivity", "brevity", "harmlessness"], "reward names to score with"
    )
    range_source: str = field("data", "mapping range: 'data' (quantiles) or 'gaussian'")
    dtype: str = field("bfloat16", "generation dtype")
    chunk: int = field(128, "responses per checkpointed chunk")
    seed: int = field(0, "random seed")

    def __post_init__(self) -> None:
        if int(self.prefixes) < 0:
            raise ValueError(f"prefixes must be a count >= 0, got {self.prefixes!r}")
        for item in self.lengths:
            if not (isinstance(item, list | tuple) and 2 <= len(item) <= 3):
                raise ValueError(
                    f"each length entry is [primer, hint] or [primer, hint, n]: {item!r}"
                )


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


def _finish(text: str, n_tokens: int, max_new_tokens: int) -> str:
    """Cut a response that hit the length cap back to its last full sentence: training on a
    sentence broken off mid-word, followed by EOS, would teach the model to stop mid-word."""
    if n_tokens < max_new_tokens - 1:
        return text
    cut = max(text.rfind(c) for c in ".!?\n")
    return text[: cut + 1].strip() if cut > len(text) // 3 else text


def sample_responses(cfg: PrepareConfig, out: Path) -> None:
    """Append sampled responses to out/samples.jsonl, skipping those already there."""
    from ric.models import load_model

    prompts = read_prompts(cfg.prompts)[: cfg.max_prompts]
    done = {r["key"] for r in read_jsonl(out / "samples.jsonl")}
    rng = random.Random(cfg.seed)
    jobs = []
    for i, prompt in enumerate(prompts):
        for k in range(cfg.samples_per_prompt):
            # Drawn for every job, done or not, so that a resume redraws the same.
            hint, opener = rng.choice(cfg.hints), rng.choice(cfg.openers or [""])
            if cfg.lengths:
                primer, length_hint, *_ = rng.choice(cfg.lengths)
                hint = length_hint or hint
                opener = " ".join(x for x in (opener, primer) if x)
            temp = float(cfg.temperatures[k % len(cfg.temperatures)])
            if f"{i}:{k}" not in done:
                jobs.append(
                    {
                        "key": f"{i}:{k}",
                        "prompt": prompt,
                        "hint": hint,
                        "opener": opener,
                        "temperature": temp,
                    }
                )
    if not jobs:
        return
    model, tok = load_model(cfg.model, dtype=cfg.dtype)
    bar = tqdm(total=len(jobs), desc="sampling responses", unit="resp")
    for start in range(0, len(jobs), cfg.chunk):
        chunk = jobs[start : start + cfg.chunk]
        for temp in sorted({j["temperature"] for j in chunk}):
            group = [j for j in chunk if j["temperature"] == temp]
            inputs = []
            for j in group:
                user = f"{j['prompt']} {j['hint']}".strip()
                msgs = [{"role": "user", "content": user}]
                text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
                inputs.append(text + j["opener"])
            settings = GenerationSettings(cfg.max_new_tokens, temperature=temp, top_p=0.95)
            texts = generate(model, tok, inputs, settings, cfg.batch_size, progress=False)
            for j, text in zip(group, texts, strict=True):
                n = len(tok(text, add_special_tokens=False).input_ids)
                text = _finish(text, n, cfg.max_new_tokens)
                if j["opener"]:
                    sep = "" if text[:1].isspace() else " "
                    text = (j["opener"] + sep + text).strip()
                j["response"] = text
            bar.update(len(group))
        append_jsonl(out / "samples.jsonl", chunk)
    bar.close()


def echoes_hint(row: dict) -> bool:
    hint = row.get("hint", "").strip().rstrip(".").lower()
    return bool(hint) and hint in row["response"].lower()


def prefix_rows(rows: list[dict], seed: int, k: int = 1) -> list[dict]:
    """Up to k extra rows per multi-sentence sample holding its first sentences (same prompt and
    sampling record, key suffixed ":p<j>"); deterministic in the seed so reruns rescore nothing."""
    extra = []
    for r in rows:
        rng = random.Random(f"{seed}:{r['key']}")
        cuts = sentence_prefixes(r["response"], rng, k, r.get("opener", ""))
        extra += [{**r, "key": f"{r['key']}:p{j}", "response": c} for j, c in enumerate(cuts)]
    return extra


def is_prefix_row(row: dict) -> bool:
    return ":p" in row["key"]


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


def prepare_dataset(cfg: PrepareConfig) -> Path:
    """Build out_dir/dataset.jsonl + reward_stats.json + data.json; rerun to resume."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.time(), cpu_seconds()
    if cfg.hf_dataset:
        rows = load_preference_dataset(cfg.hf_dataset, cfg.hf_split, cfg.max_prompts)
        source = {"hf_dataset": cfg.hf_dataset, "split": cfg.hf_split}
    else:
        sample_responses(cfg, out)
        # A small model sometimes repeats its style hint ("Ignore the question and ..."): such a
        # response would teach the trained model to print the hint.
        rows = [r for r in read_jsonl(out / "samples.jsonl") if not echoes_hint(r)]
        rows = cap_sentences(rows, cfg.lengths)
        if cfg.prefixes:
            rows += prefix_rows(rows, cfg.seed, int(cfg.prefixes))
        source = {"prompts": cfg.prompts, "model": cfg.model or "smollm2-135m-instruct"}
    score_rows(rows, list(cfg.rewards), out / "scores.jsonl")
    scores = {r["key"]: r["raw"] for r in read_jsonl(out / "scores.jsonl")}
    rows = [r for r in rows if r["key"] in scores and r["response"].strip()]
    for r in rows:
        r["raw"] = [scores[r["key"]][n] for n in cfg.rewards]
    raw = np.array([r["raw"] for r in rows])
    stats = RewardStats.fit(raw, list(cfg.rewards), range_source=cfg.range_source)
    stats.save(out)
    write_jsonl(out / "dataset.jsonl", rows)
    prev = read_json(out / "data.json") if (out / "data.json").exists() else {}
    z = stats.normalize(raw)
    write_json(
        out / "data.json",
        {
            "config": dataclasses.asdict(cfg),
            "command": command_line(),
            "source": source,
            "n_rows": len(rows),
            "reward_names": list(cfg.rewards),
            # Spearman correlation of the rewards over the data: the most negative pair is the
            # pair that conflicts most, the natural choice for a 2-objective model.
            "reward_correlation": _spearman_matrix(z).tolist(),
            # The same over the sampled responses only: sentence-prefix rows are cut from those
            # samples and couple length with content mechanically.
            "reward_correlation_samples": _spearman_matrix(
                z[[not is_prefix_row(r) for r in rows]]
            ).tolist(),
            "wall_seconds": prev.get("wall_seconds", 0) + time.time() - t0,
            "cpu_seconds": prev.get("cpu_seconds", 0) + cpu_seconds() - c0,
        },
    )
    return out


def _spearman_matrix(x: np.ndarray) -> np.ndarray:
    ranks = np.argsort(np.argsort(x, axis=0), axis=0).astype(float)
    return np.corrcoef(ranks, rowvar=False)


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


# ---------------------------------------------------------------- SFT


@dataclasses.dataclass
class SFTRecipe:
    data_dir: str = field("runs/data", "prepared dataset folder")
    out_dir: str = field("runs/sft", "output folder: checkpoints/, adapter/, train_log.json")
    model: str | None = field(None, "base model id or path; None = embedded SmolLM2-135M")
    rewards: list = field(["relevance", "brevity"], "rewards to condition on, in tag order")
    conditioning: dict = field(
        {"style": "chat", "tag": "<rm{i}_score>", "position": "user_end", "decimals": 1},
        "ConditioningFormat fields",
    )
    mapping: str = field("ric", "default preference mapping stored with the adapter")
    range_source: str = field("data", "mapping range: 'data' or 'gaussian'")
    range_quantiles: list = field([0.0, 1.0], "for range_source=data: quantiles for low/high")
    init_adapter: str | None = field(None, "continue training this adapter (online stage)")
    conditioned: bool = field(
        True, "write each response's rewards into its prompt (False: plain prompts, baselines)"
    )
    lora_r: int = field(16, "LoRA rank")
    lora_alpha: int = field(32, "LoRA alpha")
    lora_dropout: float = field(0.05, "LoRA dropout")
    target_modules: str | list = field("all-linear", "LoRA target modules")
    lora_layers: int | None = field(
        None, "LoRA on the last N transformer layers only (None: all); backprop then stops there"
    )
    learning_rate: float = field(1.414e-4, "peak learning rate")
    lr_scheduler: str = field("linear", "linear | constant | cosine")
    warmup_steps: int = field(0, "warmup steps")
    weight_decay: float = field(0.01, "weight decay")
    batch_size: int = field(8, "per-device batch size")
    grad_accum: int = field(1, "gradient accumulation steps")
    max_steps: int = field(-1, "stop after this many steps (-1: run num_epochs)")
    num_epochs: float = field(1.0, "epochs when max_steps is -1")
    max_length: int = field(512, "max tokens per sequence (prompt + response)")
    save_steps: int = field(100, "checkpoint every N steps (resume from the latest)")
    logging_steps: int = field(10, "log every N steps")
    bf16: bool = field(False, "bf16 autocast (CPUs with avx512_bf16, or GPUs)")
    load_in_8bit: bool = field(False, "8-bit base weights (bitsandbytes, GPU only; paper runs)")
    gradient_checkpointing: bool = field(False, "trade compute for memory (large models)")
    seed: int = field(0, "random seed")


def lora_config(
    model,
    r: int,
    alpha: int,
    dropout: float,
    target_modules: str | list,
    lora_layers: int | None,
):
    """LoraConfig as train_sft builds it: optionally on the last `lora_layers` layers only."""
    import torch
    from peft import LoraConfig

    layers, targets = None, target_modules
    if lora_layers is not None:
        total = model.config.num_hidden_layers
        if not 1 <= lora_layers <= total:
            raise ValueError(f"lora_layers must be in [1, {total}], got {lora_layers}")
        layers = list(range(total - lora_layers, total))
        if isinstance(targets, str):
            # peft needs explicit module names with layers_to_transform: every Linear but the head.
            targets = sorted(
                {
                    name.rsplit(".", 1)[-1]
                    for name, mod in model.named_modules()
                    if isinstance(mod, torch.nn.Linear) and "lm_head" not in name
                }
            )
    return LoraConfig(
        layers_to_transform=layers,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def build_sft_examples(
    rows: list[dict], stats: RewardStats, fmt: ConditioningFormat, tokenizer, conditioned=True
) -> list[dict]:
    """Prompt-completion pairs: each prompt carries its own response's normalized rewards
    (conditioned=False: plain chat prompts without tags, for single-reward baselines)."""
    raw = np.array([r["raw"] for r in rows])
    z = stats.normalize(raw) if conditioned else [None] * len(rows)
    eos = tokenizer.eos_token
    out = []
    for r, zi in zip(rows, z, strict=True):
        prompt = r["prompt"]
        if fmt.style == "chat" and prompt.startswith("\n\nHuman:"):
            prompt = reward_prompt(prompt)
        if conditioned:
            text = format_conditioned_prompt(
                prompt, zi, fmt, tokenizer=tokenizer, names=stats.names
            )
        elif fmt.style == "chat":
            text = format_plain_prompt(prompt, tokenizer, fmt)
        else:
            raise ValueError("unconditioned examples are built for the 'chat' style only")
        # HH-style prompts end in "Assistant:" and the response follows after a space.
        completion = (" " if fmt.style != "chat" else "") + r["response"] + eos
        out.append({"prompt": text, "completion": completion})
    return out


def completion_logprob(model, tokenizer, prompt: str, completion: str) -> float:
    """log p(completion | prompt) in nats, summed over the completion's tokens."""
    import torch

    p = tokenizer(prompt, add_special_tokens=False).input_ids
    c = tokenizer(completion, add_special_tokens=False).input_ids
    ids = torch.tensor([p + c], device=model.device)
    with torch.no_grad():
        logp = model(ids).logits[0, len(p) - 1 : -1].float().log_softmax(-1)
    return logp[torch.arange(len(c)), torch.tensor(c)].sum().item()


def tag_contrast(
    model,
    tokenizer,
    rows: list[dict],
    stats: RewardStats,
    fmt: ConditioningFormat,
    n_pairs: int = 48,
    seed: int = 0,
) -> dict:
    """How much a model reads its reward tags, without generating: pairs of responses to the
    same prompt with different rewards; each response's NLL (summed over its tokens) under the
    other response's tags minus under its own. Near 0 = the tags are ignored; a model that
    follows them finds a response less likely under the wrong tags. Cheap enough to run after
    every SFT stage, before paying for a preference sweep."""

    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["prompt"], []).append(r)
    rng = random.Random(seed)
    pairs = []
    for prompt in rng.sample(sorted(groups), len(groups)):
        g = [r for r in groups[prompt] if r["response"].strip()]
        if len(g) >= 2:
            a, b = rng.sample(g, 2)
            if (
                np.round(stats.normalize(np.array(a["raw"])), 1).tolist()
                != np.round(stats.normalize(np.array(b["raw"])), 1).tolist()
            ):
                pairs.append((a, b))
        if len(pairs) == n_pairs:
            break
    if not pairs:
        raise ValueError("tag_contrast needs prompts with at least two differently scored rows")

    def nll(prompt: str, completion: str) -> float:
        return -completion_logprob(model, tokenizer, prompt, completion)

    diffs = []
    for a, b in pairs:
        own = build_sft_examples([a], stats, fmt, tokenizer)[0]
        swapped = build_sft_examples([{**b, "response": a["response"]}], stats, fmt, tokenizer)[0]
        diffs.append(
            nll(swapped["prompt"], own["completion"]) - nll(own["prompt"], own["completion"])
        )
    d = np.array(diffs)
    return {
        "mean_nll_increase": float(d.mean()),
        "sem": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan"),
        "frac_positive": float((d > 0).mean()),
        "n_pairs": len(d),
    }


def last_checkpoint(folder: Path) -> str | None:
    ckpts = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(ckpts[-1]) if ckpts else None


def train_sft(
    recipe: SFTRecipe, rows: list[dict] | None = None, stats: RewardStats | None = None
) -> Path:
    """LoRA SFT; returns out_dir/adapter (LoRA weights + ric.json + reward_stats.json)."""
    import torch
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from ric.models import load_tokenizer, resolve_model

    out = Path(recipe.out_dir)
    t0, c0 = time.time(), cpu_seconds()
    fmt = ConditioningFormat.from_dict(recipe.conditioning)
    if rows is None:
        rows = load_dataset_rows(recipe.data_dir, list(recipe.rewards))
    if stats is None:
        stats = RewardStats.fit(
            np.array([r["raw"] for r in rows]),
            list(recipe.rewards),
            range_source=recipe.range_source,
            range_quantiles=recipe.range_quantiles,
        )
    base = recipe.model
    if recipe.init_adapter:
        base = base or RicMeta.load(recipe.init_adapter).base_model
    path = resolve_model(base)
    tok = load_tokenizer(path)
    tok.padding_side = "right"  # training pads on the right; generation uses left
    examples = build_sft_examples(rows, stats, fmt, tok, recipe.conditioned)
    dataset = Dataset.from_list(examples).shuffle(seed=recipe.seed)

    kwargs = {}
    if recipe.load_in_8bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, use_safetensors=True, **kwargs
    )
    peft_config = None
    if recipe.init_adapter:
        model = PeftModel.from_pretrained(model, recipe.init_adapter, is_trainable=True)
    else:
        peft_config = lora_config(
            model,
            recipe.lora_r,
            recipe.lora_alpha,
            recipe.lora_dropout,
            recipe.target_modules,
            recipe.lora_layers,
        )
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=recipe.warmup_steps,
        weight_decay=recipe.weight_decay,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.grad_accum,
        max_steps=recipe.max_steps,
        num_train_epochs=recipe.num_epochs,
        max_length=recipe.max_length,
        save_steps=recipe.save_steps,
        save_total_limit=2,
        logging_steps=recipe.logging_steps,
        bf16=recipe.bf16,
        gradient_checkpointing=recipe.gradient_checkpointing,
        completion_only_loss=True,
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        seed=recipe.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tok,
        peft_config=peft_config,
    )
    resume = last_checkpoint(out / "checkpoints")
    if resume:
        print(f"ric: resuming from {resume}", flush=True)
    result = trainer.train(resume_from_checkpoint=resume)

    adapter_dir = out / "adapter"
    if trainer.accelerator.is_main_process:
        contrast = None
        if recipe.conditioned:
            trainer.model.eval()
            contrast = tag_contrast(trainer.model, tok, rows, stats, fmt, seed=recipe.seed)
            print(f"ric: tag contrast {contrast}", flush=True)
        trainer.model.save_pretrained(adapter_dir)
        stats.save(adapter_dir)
        RicMeta(
            base_model=base or "smollm2-135m-instruct",
            reward_names=list(recipe.rewards),
            stats=stats.to_dict(),
            conditioning=fmt.to_dict(),
            mapping=recipe.mapping,
            extra={"recipe": dataclasses.asdict(recipe), "n_examples": len(examples)},
        ).save(adapter_dir)
        prev = read_json(out / "train_log.json") if (out / "train_log.json").exists() else {}
        write_json(
            out / "train_log.json",
            {
                "command": command_line(),
                "steps": result.global_step,
                "train_loss": result.training_loss,
                "n_examples": len(examples),
                # Training rows, so this measures fit, not generalization (see tag_contrast).
                "tag_contrast": contrast,
                "wall_seconds": prev.get("wall_seconds", 0) + time.time() - t0,
                "cpu_seconds": prev.get("cpu_seconds", 0) + cpu_seconds() - c0,
                "log_history": trainer.state.log_history,
            },
        )
    return adapter_dir


def logged_cpu_seconds(path: Path) -> float | None:
    """The cpu_seconds a run's own log (data.json, train_log.json, mors.json) recorded."""
    return read_json(path).get("cpu_seconds") if path.exists() else None


def adapter_lineage(adapter: str | Path) -> list[dict]:
    """Every training stage behind an adapter, oldest first, from the recipes its ric.json
    files record (each stage's init_adapter names the one before): [{"adapter", "out_dir",
    "data_dir"}]. A MORS iteration's stage sits in iter_<k>/sft next to its mors.json. Costs
    and data of a multi-stage model are summed over this chain, so nothing is counted twice
    and no stage is forgotten."""
    chain, seen, current = [], set(), str(adapter)
    while current:
        key = str(Path(current).resolve())
        if key in seen:
            raise ValueError(f"adapter lineage loops at {current}")
        seen.add(key)
        recipe = RicMeta.load(current).extra.get("recipe", {})
        chain.append(
            {
                "adapter": current,
                "out_dir": recipe.get("out_dir", str(Path(current).parent)),
                "data_dir": recipe.get("data_dir"),
            }
        )
        current = recipe.get("init_adapter")
    return chain[::-1]


def lineage_cpu_seconds(adapter: str | Path) -> dict:
    """{part: CPU-seconds} for every data set and stage behind `adapter`, from their own logs
    (None where a log is missing): each data set once, each SFT stage, each MORS sampling."""
    parts: dict[str, float | None] = {}
    for stage in adapter_lineage(adapter):
        data = stage["data_dir"]
        if data and f"data {data}" not in parts:
            parts[f"data {data}"] = logged_cpu_seconds(Path(data) / "data.json")
        out = Path(stage["out_dir"])
        mors = out.parent / "mors.json"
        if mors.exists():
            parts[f"MORS {out.parent}"] = logged_cpu_seconds(mors)
        parts[f"SFT {out}"] = logged_cpu_seconds(out / "train_log.json")
    return parts


# ---------------------------------------------------------------- online MORS


@dataclasses.dataclass
class OnlineRecipe:
    data_dir: str = field("runs/data", "offline dataset folder (same rewards)")
    adapter: str = field("runs/sft/adapter", "adapter to improve (from the offline stage)")
    out_dir: str = field("runs/online", "output folder: iter_<k>/ per iteration")
    iterations: int = field(1, "MORS iterations (the paper: 1-2)")
    n_prompts: int = field(1000, "prompts sampled (with replacement) per iteration")
    max_new_tokens: int = field(64, "generation cap")
    batch_size: int = field(32, "generation batch size")
    temperature: float = field(0.7, "sampling temperature (released: 0.7)")
    top_p: float = field(0.9, "nucleus (released: 0.9)")
    keep_quantile: float = field(0.7, "keep a sample if ANY reward >= this quantile")
    offline_subsample: int = field(2000, "filtered offline rows mixed in per iteration")
    prompts: str = field("assets/prompts/train.txt", "prompt pool")
    dtype: str = field("bfloat16", "generation dtype")
    sft: dict = field(
        {"learning_rate": 1e-5, "lr_scheduler": "constant", "max_steps": 4000},
        "SFTRecipe fields for the continued SFT (released: lr 1e-5 constant, 4k steps)",
    )
    seed: int = field(0, "random seed")


def frontier_targets(low, high, n: int, rng: np.random.Generator) -> np.ndarray:
    """Desired rewards on the upper boundary of the reward box (METHOD.md 5.2): draw each r_i
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


def mors_iteration(
    recipe: OnlineRecipe, adapter: str, it: int, kept_so_far: list[dict]
) -> tuple[str, list[dict]]:
    """Generate at frontier targets, relabel with obtained rewards, filter, continue SFT."""
    from ric.models import load_model

    out = Path(recipe.out_dir) / f"iter_{it}"
    cost_file, mark = out / "sample_cost.json", [time.time(), cpu_seconds()]

    def add_cost() -> tuple[float, float]:
        """Add the wall/CPU seconds since the last call to the iteration's running total, kept
        on disk so that a killed and resumed iteration still counts its earlier sampling."""
        done = read_json(cost_file) if cost_file.exists() else {"wall": 0.0, "cpu": 0.0}
        now = [time.time(), cpu_seconds()]
        total = {"wall": done["wall"] + now[0] - mark[0], "cpu": done["cpu"] + now[1] - mark[1]}
        write_json(cost_file, total)
        mark[:] = now
        return total["wall"], total["cpu"]

    meta = RicMeta.load(adapter)
    stats = RewardStats.from_dict(meta.stats)
    fmt = ConditioningFormat.from_dict(meta.conditioning)
    rng = np.random.default_rng(recipe.seed + it)
    samples_file = out / "samples.jsonl"
    rows = read_jsonl(samples_file)
    if len(rows) < recipe.n_prompts:
        pool = read_prompts(recipe.prompts)
        prompts = [pool[i] for i in rng.integers(0, len(pool), recipe.n_prompts)]
        targets = frontier_targets(stats.low, stats.high, recipe.n_prompts, rng)
        model, tok = load_model(adapter=adapter, dtype=recipe.dtype)
        settings = GenerationSettings(recipe.max_new_tokens, recipe.temperature, recipe.top_p)
        chunk = 128
        for start in tqdm(range(len(rows), recipe.n_prompts, chunk), desc=f"MORS {it} sampling"):
            ps, ts = prompts[start : start + chunk], targets[start : start + chunk]
            inputs = [
                format_conditioned_prompt(p, t, fmt, tokenizer=tok, names=stats.names)
                for p, t in zip(ps, ts, strict=True)
            ]
            texts = generate(model, tok, inputs, settings, recipe.batch_size, progress=False)
            append_jsonl(
                samples_file,
                [
                    {"key": f"{it}:{start + i}", "prompt": p, "desired": t.tolist(), "response": x}
                    for i, (p, t, x) in enumerate(zip(ps, ts, texts, strict=True))
                ],
            )
            add_cost()
        del model
        rows = read_jsonl(samples_file)
    rows = [r for r in rows if not is_degenerate(r["response"])]
    score_rows(rows, meta.reward_names, out / "scores.jsonl")
    scores = {r["key"]: r["raw"] for r in read_jsonl(out / "scores.jsonl")}
    for r in rows:  # hindsight relabeling: the rewards OBTAINED, not the ones asked for
        r["raw"] = [scores[r["key"]][n] for n in meta.reward_names]
    z = stats.normalize(np.array([r["raw"] for r in rows]))
    kept = [r for r, k in zip(rows, keep_mask(z, stats, recipe.keep_quantile), strict=True) if k]
    kept_so_far = kept_so_far + kept

    offline = load_dataset_rows(recipe.data_dir, meta.reward_names)
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
    # Generation and scoring cost over every call that worked on this iteration; the SFT's
    # own cost is in sft/train_log.json.
    gen_wall, gen_cpu = add_cost()
    new_adapter = train_sft(SFTRecipe(**sft_fields), rows=mix, stats=stats)
    write_jsonl(out / "kept.jsonl", kept)
    write_json(
        out / "mors.json",
        {
            "generated": len(read_jsonl(samples_file)),
            "non_degenerate": len(rows),
            "kept": len(kept),
            "kept_total": len(kept_so_far),
            "offline_kept": len(good),
            "mixed": len(mix),
            "quantile_thresholds": stats.quantile(recipe.keep_quantile).tolist(),
            "wall_seconds": gen_wall,
            "cpu_seconds": gen_cpu,
        },
    )
    return str(new_adapter), kept_so_far
