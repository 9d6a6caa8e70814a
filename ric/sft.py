"""Reward-conditioned SFT (docs/METHOD.md sections 3-4): LoRA through TRL's SFTTrainer.

Prompt-completion pairs whose prompts carry the response's own normalized rewards; loss on the
completion (the model's own answer, plus EOS) only. `save_adapter` is the one way an adapter
folder is written (RiC SFT, its MORS stages and every baseline): whole or not at all, with its
metadata. `ResumableCheckpoints` is the one checkpoint rule every trainer follows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from pathlib import Path

import numpy as np

from ric.artifacts import (
    CHECKPOINT_DONE,
    RicMeta,
    append_jsonl,
    atomic_dir,
    clean_stale_tmp,
    last_checkpoint,
    read_json,
    read_jsonl,
    write_json,
)
from ric.conditioning import ConditioningFormat, format_conditioned_prompt, format_plain_prompt
from ric.config import field
from ric.data import load_dataset_rows, reward_prompt
from ric.defaults import DEFAULT
from ric.normalization import RewardStats
from ric.runlog import RunClock, command_line, set_threads_from_env

TRAIN_LOG = "train_log.json"
TARGETS = ("tokens", "sampler", "instruction")
MODEL_INPUTS = ("input_ids", "attention_mask")


@dataclasses.dataclass
class SFTRecipe:
    data_dir: str = field("runs/data", "prepared dataset folder")
    out_dir: str = field("runs/sft", "output folder: checkpoints/, adapter/, train_log.json")
    model: str | None = field(None, "base model id or path; None = embedded SmolLM2-135M")
    rewards: list = field(list(DEFAULT.rewards), "rewards to condition on, in tag order")
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
    group_by_length: bool = field(
        False,
        "batch answers of similar length together (less padding computed), steps in random order",
    )
    load_in_8bit: bool = field(False, "8-bit base weights (bitsandbytes, GPU only; paper runs)")
    gradient_checkpointing: bool = field(False, "trade compute for memory (large models)")
    targets: str = field(
        "tokens",
        "'tokens': the answer's own tokens (the paper); 'sampler': along the same answer, the "
        "distribution each token was sampled from (its top target_k; ric.distill): the same "
        "expectation without the sampling noise, for data the model sampled itself; "
        "'instruction': the same at temperature 1 without the repetition penalty, so that the "
        "targets differ from the model's own only by what the hidden instruction changed",
    )
    target_k: int = field(32, "for soft targets: tokens kept of each distribution")
    hard_target_weight: float = field(
        0.0, "for soft targets: weight of the ordinary one-hot loss mixed in (0..1)"
    )
    monitor_steps: int = field(
        0,
        "every N steps, the tag contrast (farthest pairs) of monitor_prompts prompts held out "
        "of training, appended to out_dir/contrast_log.jsonl: whether the tags are being "
        "learned, while it trains (0: off, nothing held out)",
    )
    monitor_prompts: int = field(24, "prompts held out for monitor_steps")
    contrast_weight: float = field(
        0.0,
        "weight of the paired tag-contrast term (tag_contrast_loss): each answer is also scored "
        "under the tags of its prompt's most differently scored answer and is trained to be "
        "less likely there (0: plain SFT; targets=tokens only)",
    )
    contrast_margin: float = field(
        10.0, "nats of contrast per answer at which that term fades (1 / its temperature)"
    )
    seed: int = field(0, "random seed")


def lora_config(
    model,
    r: int,
    alpha: int,
    dropout: float,
    target_modules: str | list,
    lora_layers: int | None,
):
    """LoraConfig as train_sft builds it: optionally on the last `lora_layers` layers only.
    A model with reward vectors (ric.vectors) trains and saves them with the LoRA."""
    import torch
    from peft import LoraConfig

    from ric.vectors import ATTR, has_reward_vectors

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
        modules_to_save=[ATTR] if has_reward_vectors(model) else None,
        task_type="CAUSAL_LM",
    )


def recipe_lora(model, recipe):
    """lora_config from any recipe with the lora_* fields (SFT, the MORLHF baseline)."""
    return lora_config(
        model,
        recipe.lora_r,
        recipe.lora_alpha,
        recipe.lora_dropout,
        recipe.target_modules,
        recipe.lora_layers,
    )


def build_sft_examples(
    rows: list[dict], stats: RewardStats, fmt: ConditioningFormat, tokenizer, conditioned=True
) -> list[dict]:
    """Prompt-completion pairs: each prompt carries its own response's normalized rewards
    (conditioned=False: plain chat prompts without tags, for single-reward baselines)."""
    raw = np.array([r["raw"] for r in rows])
    z = stats.normalize(raw) if conditioned else [None] * len(rows)
    out = []
    for r, zi in zip(rows, z, strict=True):
        prompt = r["prompt"]
        if fmt.style == "chat" and prompt.startswith("\n\nHuman:"):
            prompt = reward_prompt(prompt)
        # Only the user's request: a hidden sampling instruction (row["instruction"]) never
        # reaches a training prompt.
        if conditioned:
            text = format_conditioned_prompt(
                prompt, zi, fmt, tokenizer=tokenizer, names=stats.names
            )
        elif fmt.style == "chat":
            text = format_plain_prompt(prompt, tokenizer, fmt)
        else:
            raise ValueError("unconditioned examples are built for the 'chat' style only")
        out.append({"prompt": text, "completion": sft_completion(r["response"], fmt, tokenizer)})
    return out


def sft_completion(response: str, fmt: ConditioningFormat, tokenizer) -> str:
    """What an SFT example's loss is on: the response and end-of-text (HH-style prompts end in
    "Assistant:", so the response follows after a space)."""
    return (" " if fmt.style != "chat" else "") + response + tokenizer.eos_token


def length_buckets(lengths, group: int, seed: int) -> list[int]:
    """An order of the examples in which each run of `group` (one optimizer step) holds
    examples of similar length, and the steps come in random order.

    Batching by length saves the padding (the own-answer data runs from a few tokens to 640),
    but transformers' length-grouped sampler goes from the longest to the shortest examples
    within each of a few large chunks: length, and with it the brevity tag, then drifts
    steadily through training, a curriculum the tags must not be confounded with."""
    rng = np.random.default_rng(seed)
    by_length = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    steps = [by_length[k : k + group] for k in range(0, len(by_length), group)]
    return [i for k in rng.permutation(len(steps)) for i in steps[k]]


def _lengths(dataset) -> list[int]:
    return [len(p) + len(c) for p, c in zip(dataset["prompt"], dataset["completion"], strict=True)]


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def completion_logprobs(model, tokenizer, prompt: str, completion: str) -> np.ndarray:
    """log p of each completion token given the prompt and the tokens before it, in nats."""
    import torch

    p = tokenizer(prompt, add_special_tokens=False).input_ids
    c = tokenizer(completion, add_special_tokens=False).input_ids
    ids = torch.tensor([p + c], device=model.device)
    with torch.no_grad():
        logp = model(ids).logits[0, len(p) - 1 : -1].float().log_softmax(-1)
    return logp[torch.arange(len(c)), torch.tensor(c)].cpu().numpy()


def completion_logprob(model, tokenizer, prompt: str, completion: str) -> float:
    """log p(completion | prompt) in nats, summed over the completion's tokens."""
    return float(completion_logprobs(model, tokenizer, prompt, completion).sum())


FIRST_TOKENS = 5


def contrast_pairs(
    rows: list[dict], stats: RewardStats, n_pairs: int, seed: int = 0, pairing: str = "random"
) -> list[tuple[dict, dict]]:
    """Up to n_pairs (a, b) rows answering the same prompt whose rounded tags differ, one pair
    per prompt (prompts in a seeded random order). pairing "random": two random rows;
    "farthest": the two whose normalized rewards lie farthest apart."""
    if pairing not in ("random", "farthest"):
        raise ValueError(f"pairing must be 'random' or 'farthest', got {pairing!r}")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["prompt"], []).append(r)
    rng = random.Random(seed)
    pairs = []
    for prompt in rng.sample(sorted(groups), len(groups)):
        g = [r for r in groups[prompt] if r["response"].strip()]
        if len(g) < 2:
            continue
        z = stats.normalize(np.array([r["raw"] for r in g]))
        if pairing == "random":
            i, j = rng.sample(range(len(g)), 2)  # the same draw as sampling g itself
        else:
            dist = np.linalg.norm(z[:, None] - z[None], axis=-1)
            i, j = np.unravel_index(dist.argmax(), dist.shape)
        if np.round(z[i], 1).tolist() != np.round(z[j], 1).tolist():
            pairs.append((g[i], g[j]))
        if len(pairs) == n_pairs:
            break
    return pairs


def tag_contrast(
    model,
    tokenizer,
    rows: list[dict],
    stats: RewardStats,
    fmt: ConditioningFormat,
    n_pairs: int = 48,
    seed: int = 0,
    pairing: str = "random",
) -> dict:
    """How much a model reads its reward tags, without generating: pairs of responses to the
    same prompt with different rewards (contrast_pairs); each response's NLL (summed over its
    tokens) under the other response's tags minus under its own. Near 0 = the tags are
    ignored; a model that follows them finds a response less likely under the wrong tags.
    Cheap enough to run after every SFT stage, before paying for a preference sweep. The
    "farthest" pairing is the clearest test (a short answer against a long one)."""
    pairs = contrast_pairs(rows, stats, n_pairs, seed, pairing)
    if not pairs:
        raise ValueError("tag_contrast needs prompts with at least two differently scored rows")

    def condition(a: dict, b: dict) -> tuple[str, str, str]:
        own = build_sft_examples([a], stats, fmt, tokenizer)[0]
        swapped = build_sft_examples([{**b, "response": a["response"]}], stats, fmt, tokenizer)[0]
        return own["prompt"], swapped["prompt"], own["completion"]

    return _contrast(model, tokenizer, pairs, condition)


def instruction_contrast(
    model,
    tokenizer,
    rows: list[dict],
    stats: RewardStats,
    fmt: ConditioningFormat,
    n_pairs: int = 48,
    seed: int = 0,
) -> dict | None:
    """tag_contrast's farthest pairs, conditioned instead on the hidden instruction each answer
    was sampled under (the sampling prompt, ric.data): what the answers tell about their
    condition when the condition is words the model already reads. On the base model this is
    the signal an SFT has to learn to find in the tags; None when the rows carry no differing
    instructions."""
    pairs = [
        (a, b)
        for a, b in contrast_pairs(rows, stats, 4 * n_pairs, seed, "farthest")
        if (a.get("instruction") or "") != (b.get("instruction") or "")
    ][:n_pairs]
    if not pairs:
        return None

    def condition(a: dict, b: dict) -> tuple[str, str, str]:
        own = build_sft_examples([a], stats, fmt, tokenizer)[0]["completion"]
        prompts = [
            format_plain_prompt(a["prompt"], tokenizer, system=r.get("instruction") or None)
            for r in (a, b)
        ]
        return prompts[0], prompts[1], own

    return _contrast(model, tokenizer, pairs, condition)


def _contrast(model, tokenizer, pairs, condition) -> dict:
    """Nats each pair's first answer saves under its own condition against the other's:
    whole, its first FIRST_TOKENS tokens and its last token (the end of text). Under teacher
    forcing an answer's own beginning tells much of how it goes on, so a model reading its
    condition shows it most clearly at the start and at the end."""

    def summary(d: np.ndarray) -> dict:
        return {
            "mean_nll_increase": float(d.mean()),
            "sem": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan"),
        }

    whole, first, end = [], [], []
    for a, b in pairs:
        own_prompt, other_prompt, completion = condition(a, b)
        gain = completion_logprobs(model, tokenizer, own_prompt, completion) - completion_logprobs(
            model, tokenizer, other_prompt, completion
        )
        whole.append(gain.sum())
        first.append(gain[:FIRST_TOKENS].sum())
        end.append(gain[-1])
    d = np.array(whole)
    return {
        **summary(d),
        "frac_positive": float((d > 0).mean()),
        "n_pairs": len(d),
        "first_tokens": summary(np.array(first)),
        "end_token": summary(np.array(end)),
    }


def save_adapter(model, folder: str | Path, meta: RicMeta) -> Path:
    """Write a LoRA adapter folder whole (temp folder + rename): weights (safetensors), ric.json
    and reward_stats.json. Every trainer in ric saves through here."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        RewardStats.from_dict(meta.stats).save(tmp)
        meta.save(tmp)
    return folder


def checkpoint_callback(clock: RunClock | None = None):
    """The checkpoint rule of every ric trainer, as a TrainerCallback: the last step is always
    saved, a checkpoint is marked done (CHECKPOINT_DONE) only after the trainer has written all
    of it, and each save records the run's cost so far."""
    from transformers import TrainerCallback

    class ResumableCheckpoints(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.max_steps and state.global_step >= state.max_steps:
                control.should_save = True
            return control

        def on_save(self, args, state, control, **kw):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir() and state.is_world_process_zero:
                (folder / CHECKPOINT_DONE).write_text(f"{state.global_step}\n")
            if clock:
                clock.tick()
            return control

    return ResumableCheckpoints()


CONTRAST_LOG = "contrast_log.jsonl"


def hold_out_prompts(rows: list[dict], n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(training rows, rows of n held-out prompts): a seeded draw among the prompts with at
    least two answers, so each held-out prompt gives a contrast pair."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["prompt"]] = counts.get(r["prompt"], 0) + 1
    eligible = sorted(p for p, c in counts.items() if c >= 2)
    if n < 1 or n >= len(eligible):
        raise ValueError(f"monitor_prompts must be in [1, {len(eligible) - 1}], got {n}")
    held = set(random.Random(seed).sample(eligible, n))
    return [r for r in rows if r["prompt"] not in held], [r for r in rows if r["prompt"] in held]


def training_rows(recipe: SFTRecipe, rows: list[dict] | None = None):
    """(the rows a recipe trains on, the rows of the prompts it holds out for its monitor),
    from `rows` or its data_dir. Its reward statistics are fitted on the first: a baseline
    trained "on RiC's data" takes the same rows (bench/fronts.py)."""
    if rows is None:
        rows = load_dataset_rows(recipe.data_dir, list(recipe.rewards))
    if recipe.monitor_steps > 0 and recipe.conditioned:
        return hold_out_prompts(rows, recipe.monitor_prompts, recipe.seed)
    return rows, []


def contrast_monitor(every: int, tokenizer, rows, stats, fmt, log: Path):
    """A TrainerCallback writing tag_contrast's farthest pairs on held-out rows every `every`
    steps (one JSON line per step): a training run shows while it runs whether it is learning to
    read its tags, instead of after hours of steps."""
    from transformers import TrainerCallback

    class ContrastMonitor(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % every or not state.is_world_process_zero:
                return control
            model.eval()
            c = tag_contrast(model, tokenizer, rows, stats, fmt, len(rows), pairing="farthest")
            model.train()
            append_jsonl(log, [{"step": state.global_step, "farthest": c}])
            print(
                f"ric: step {state.global_step} held-out tag contrast "
                f"{c['mean_nll_increase']:+.2f} +- {c['sem']:.2f} nats",
                flush=True,
            )
            return control

    return ContrastMonitor()


def _final(state: dict, max_steps: int) -> bool:
    """Whether a checkpoint's trainer state is the run's last step (max_steps <= 0: the
    epochs' own total, as the trainer recorded it)."""
    target = max_steps if max_steps > 0 else state["max_steps"]
    return state["global_step"] >= target > 0


def run_trainer(trainer, checkpoints: Path) -> dict:
    """Train, resuming from the newest whole checkpoint. A run whose last checkpoint already
    reached max_steps is not trained again (one more step would change the adapter): its
    weights are loaded from that checkpoint instead. Returns {"steps", "train_loss",
    "log_history"}."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    resume = last_checkpoint(checkpoints)
    if resume:
        state = read_json(Path(resume) / "trainer_state.json")
        if _final(state, trainer.args.max_steps):
            print(f"ric: {resume} is the final step; loading it, not training", flush=True)
            weights = load_file(str(Path(resume) / "adapter_model.safetensors"))
            set_peft_model_state_dict(trainer.model, weights)
            history = state["log_history"]
            losses = [h["loss"] for h in history if "loss" in h]
            return {
                "steps": state["global_step"],
                "train_loss": float(np.mean(losses)) if losses else None,
                "log_history": history,
            }
        print(f"ric: resuming from {resume}", flush=True)
    result = trainer.train(resume_from_checkpoint=resume)
    return {
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "log_history": trainer.state.log_history,
    }


def finished_adapter(out: Path, max_steps: int) -> Path | None:
    """out/adapter when a run already saved it from its final checkpoint: a rerun of a finished
    run returns it untouched (re-saving would rewrite its files and invalidate the sweeps made
    with it). A checkpoint newer than the saved adapter (a run continued to more steps) or a
    missing log (a kill between the save and the log) does not count."""
    adapter, log = out / "adapter", out / TRAIN_LOG
    resume = last_checkpoint(out / "checkpoints")
    if not (resume and log.exists() and (adapter / "ric.json").exists()):
        return None
    state = read_json(Path(resume) / "trainer_state.json")
    if _final(state, max_steps) and read_json(log).get("steps") == state["global_step"]:
        print(f"ric: {adapter} is already trained to step {state['global_step']}", flush=True)
        return adapter
    return None


def _ordered_dataset(items: list[dict], recipe, lengths=None):
    """Training examples as a Dataset in training order: shuffled, then (group_by_length) in
    length_buckets' order. lengths(dataset) -> one length per example (default: its
    input_ids')."""
    from datasets import Dataset

    dataset = Dataset.from_list(items).shuffle(seed=recipe.seed)
    if recipe.group_by_length:
        group = recipe.batch_size * recipe.grad_accum * _world_size()
        sizes = lengths(dataset) if lengths else [len(x) for x in dataset["input_ids"]]
        dataset = dataset.select(length_buckets(sizes, group, recipe.seed))
    return dataset


def _pad(rows: list[list], value, width: int):
    import torch

    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def _tokens(tok, e: dict, max_length: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a prompt-completion example, the completion cut from the right
    to max_length as SFTTrainer does."""
    p = tok(e["prompt"], add_special_tokens=False).input_ids
    c = tok(e["completion"], add_special_tokens=False).input_ids
    c = c[: max(0, max_length - len(p))]
    return p + c, [-100] * len(p) + c


def soft_target_trainer(
    recipe, model, tok, rows, examples, model_path, common, callbacks, clock=None
):
    """A transformers Trainer on the sampler's targets (ric.distill) for `examples` (built
    from `rows`, which carry the sampling temperature and hidden instruction): the targets of
    every row of recipe.data_dir are computed once, in resumable chunks, before training, and
    logged there, not in this run's `clock` (the next SFT on the data reuses them)."""

    from ric.distill import build_targets, load_targets, soft_target_loss

    every = read_jsonl(Path(recipe.data_dir) / "dataset.jsonl")
    fmt = ConditioningFormat.from_dict(recipe.conditioning)
    completions = [sft_completion(r["response"], fmt, tok) for r in every]
    with clock.paused() if clock else contextlib.nullcontext():
        folder = build_targets(
            recipe.data_dir,
            every,
            completions,
            model_path,
            recipe.target_k,
            instruction_only=recipe.targets == "instruction",
        )
    targets = load_targets(folder)
    k = recipe.target_k
    items = []
    for r, e in zip(rows, examples, strict=True):
        whole = len(tok(e["completion"], add_special_tokens=False).input_ids)
        input_ids, labels = _tokens(tok, e, recipe.max_length)
        ids, probs = targets[r["key"]]
        if len(ids) != whole or ids.shape[1] < k:
            raise ValueError(f"sampler targets of {r['key']} do not match its answer: rebuild")
        p, n = labels.count(-100), len(labels) - labels.count(-100)
        items.append(
            {
                "input_ids": input_ids,
                "labels": labels,
                "target_ids": [[0] * k] * p + ids[:n, :k].tolist(),
                "target_probs": [[0.0] * k] * p + probs[:n, :k].astype(float).tolist(),
            }
        )
    dataset = _ordered_dataset(items, recipe)

    def collate(batch: list[dict]) -> dict:
        width = max(len(b["input_ids"]) for b in batch)
        return {
            "input_ids": _pad([b["input_ids"] for b in batch], tok.pad_token_id, width),
            "attention_mask": _pad([[1] * len(b["input_ids"]) for b in batch], 0, width),
            "labels": _pad([b["labels"] for b in batch], -100, width),
            "target_ids": _pad([b["target_ids"] for b in batch], [0] * k, width),
            "target_probs": _pad([b["target_probs"] for b in batch], [0.0] * k, width).float(),
        }

    hard = float(recipe.hard_target_weight)

    def loss(logits, b):
        return soft_target_loss(logits, b["labels"], b["target_ids"], b["target_probs"], hard)

    return _loss_trainer(recipe, model, tok, dataset, collate, loss, common, callbacks)


def _loss_trainer(recipe, model, tok, dataset, collate, loss, common, callbacks):
    """A transformers Trainer (LoRA added unless the recipe continues an adapter) whose loss is
    `loss(logits, batch)`: the logits at every position but the last, and the collated fields
    other than the model's inputs shifted to match (field[:, t] goes with the logits that
    predict token t + 1)."""
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments

    class LossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            extra = {k: inputs.pop(k)[:, 1:] for k in list(inputs) if k not in MODEL_INPUTS}
            outputs = model(**inputs)
            value = loss(outputs.logits[:, :-1], extra)
            return (value, outputs) if return_outputs else value

    if not recipe.init_adapter:
        model = get_peft_model(model, recipe_lora(model, recipe))
    return LossTrainer(
        model=model,
        args=TrainingArguments(**common, remove_unused_columns=False),
        train_dataset=dataset,
        data_collator=collate,
        processing_class=tok,
        callbacks=callbacks,
    )


def contrast_partners(rows: list[dict], stats: RewardStats, decimals: int = 1) -> list[int | None]:
    """For each row, the index of the row answering the same prompt whose normalized rewards lie
    farthest from its own (None when no other answer to its prompt carries different tags)."""
    z = np.round(stats.normalize(np.array([r["raw"] for r in rows])), decimals)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["prompt"], []).append(i)
    out: list[int | None] = []
    for i, r in enumerate(rows):
        others = [j for j in groups[r["prompt"]] if j != i and (z[j] != z[i]).any()]
        out.append(max(others, key=lambda j: np.linalg.norm(z[j] - z[i])) if others else None)
    return out


def tag_contrast_loss(logits, labels, weight: float, margin: float):
    """SFT loss plus a paired tag-contrast term, per completion token.

    logits (2B, T, V) and labels (2B, T), aligned (labels[:, t] is what logits[:, t] predicts,
    -100 elsewhere): rows 0..B-1 are answers under their own tags, rows B..2B-1 the same answers
    under their partner's tags (all labels -100 for an answer without a partner). With
    d = log p(answer | own tags) - log p(answer | partner's tags), summed over the answer, the
    term is margin * softplus(-d / margin): its gradient moves each token of an answer by at
    most `weight` times its own SFT gradient, and fades once d passes `margin` nats, the size
    of the contrast a hidden instruction gives the base model (docs/METHOD.md section 4)."""
    import torch

    b = labels.shape[0] // 2
    mask = labels != -100
    logp = torch.log_softmax(logits.float(), dim=-1)
    token = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    own, swapped = token[:b].sum(1), token[b:].sum(1)
    paired = mask[b:].any(1)
    d = own - swapped
    contrast = margin * torch.nn.functional.softplus(-d / margin) * paired
    n = mask[:b].sum().clamp(min=1)
    return (-own.sum() + weight * contrast.sum()) / n


def paired_contrast_trainer(recipe, model, tok, rows, examples, stats, fmt, common, callbacks):
    """A transformers Trainer on tag_contrast_loss: each batch holds its answers twice, under
    their own tags and under their partner's (contrast_partners)."""

    partners = contrast_partners(rows, stats, fmt.decimals)
    # Each answer with its partner's rewards, hence its partner's tags.
    swapped = [
        {**rows[j], "response": r["response"]}
        for r, j in zip(rows, partners, strict=True)
        if j is not None
    ]
    others = iter(build_sft_examples(swapped, stats, fmt, tok))
    items = []
    for e, j in zip(examples, partners, strict=True):
        input_ids, labels = _tokens(tok, e, recipe.max_length)
        swapped_ids, swapped_labels = [tok.pad_token_id], [-100]
        if j is not None:
            swapped_ids, swapped_labels = _tokens(tok, next(others), recipe.max_length)
        items.append(
            {
                "input_ids": input_ids,
                "labels": labels,
                "swapped_ids": swapped_ids,
                "swapped_labels": swapped_labels,
            }
        )
    dataset = _ordered_dataset(items, recipe)

    def collate(batch: list[dict]) -> dict:
        ids = [b["input_ids"] for b in batch] + [b["swapped_ids"] for b in batch]
        labels = [b["labels"] for b in batch] + [b["swapped_labels"] for b in batch]
        width = max(len(x) for x in ids)
        return {
            "input_ids": _pad(ids, tok.pad_token_id, width),
            "attention_mask": _pad([[1] * len(x) for x in ids], 0, width),
            "labels": _pad(labels, -100, width),
        }

    weight, margin = float(recipe.contrast_weight), float(recipe.contrast_margin)

    def loss(logits, b):
        return tag_contrast_loss(logits, b["labels"], weight, margin)

    return _loss_trainer(recipe, model, tok, dataset, collate, loss, common, callbacks)


def train_sft(
    recipe: SFTRecipe,
    rows: list[dict] | None = None,
    stats: RewardStats | None = None,
    extra: dict | None = None,
) -> Path:
    """LoRA SFT; returns out_dir/adapter (LoRA weights + ric.json + reward_stats.json).
    `extra` is merged into the adapter's ric.json "extra" (a baseline's description)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from ric.models import load_tokenizer, resolve_model
    from ric.vectors import prepare_model

    set_threads_from_env()
    out = Path(recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(out)
    clock = RunClock(out)
    fmt = ConditioningFormat.from_dict(recipe.conditioning)
    if recipe.targets not in TARGETS:
        raise ValueError(f"targets must be one of {TARGETS}, got {recipe.targets!r}")
    if recipe.contrast_weight < 0 or recipe.contrast_margin <= 0:
        raise ValueError(
            f"contrast_weight must be >= 0 and contrast_margin > 0, got "
            f"{recipe.contrast_weight} and {recipe.contrast_margin}"
        )
    if fmt.vectors and not recipe.conditioned:
        raise ValueError("conditioning.vectors reads the tags: it needs conditioned=true")
    if recipe.contrast_weight and recipe.targets != "tokens":
        raise ValueError("contrast_weight works with targets='tokens' only")
    if done := finished_adapter(out, recipe.max_steps):
        return done
    rows, held_out = training_rows(recipe, rows)
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

    kwargs = {}
    if recipe.load_in_8bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, use_safetensors=True, **kwargs
    )
    prepare_model(model, tok, fmt, len(recipe.rewards))
    if recipe.init_adapter:
        model = PeftModel.from_pretrained(model, recipe.init_adapter, is_trainable=True)
    common = dict(
        output_dir=str(out / "checkpoints"),
        learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=recipe.warmup_steps,
        weight_decay=recipe.weight_decay,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.grad_accum,
        max_steps=recipe.max_steps,
        num_train_epochs=recipe.num_epochs,
        save_steps=recipe.save_steps,
        save_total_limit=2,
        logging_steps=recipe.logging_steps,
        bf16=recipe.bf16,
        # length_buckets fixed the order already (shuffled buckets of similar length)
        train_sampling_strategy="sequential" if recipe.group_by_length else "random",
        gradient_checkpointing=recipe.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        seed=recipe.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    callbacks = [checkpoint_callback(clock)]
    if recipe.targets != "tokens":
        trainer = soft_target_trainer(
            recipe, model, tok, rows, examples, path, common, callbacks, clock
        )
    elif recipe.contrast_weight:
        trainer = paired_contrast_trainer(
            recipe, model, tok, rows, examples, stats, fmt, common, callbacks
        )
    else:
        dataset = _ordered_dataset(examples, recipe, _lengths)
        args = SFTConfig(**common, max_length=recipe.max_length, completion_only_loss=True)
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tok,
            peft_config=recipe_lora(model, recipe) if not recipe.init_adapter else None,
            callbacks=callbacks,
        )
    if held_out:
        log = out / CONTRAST_LOG
        trainer.add_callback(contrast_monitor(recipe.monitor_steps, tok, held_out, stats, fmt, log))
    result = run_trainer(trainer, out / "checkpoints")

    adapter_dir = out / "adapter"
    if trainer.accelerator.is_main_process:
        contrast = None
        if recipe.conditioned:
            trainer.model.eval()
            contrast = tag_contrast(trainer.model, tok, rows, stats, fmt, seed=recipe.seed)
            print(f"ric: tag contrast {contrast}", flush=True)
        meta = RicMeta(
            base_model=base or DEFAULT.model,
            reward_names=list(recipe.rewards),
            stats=stats.to_dict(),
            conditioning=fmt.to_dict(),
            mapping=recipe.mapping,
            extra={
                "recipe": dataclasses.asdict(recipe),
                "n_examples": len(examples),
                **(extra or {}),
            },
        )
        save_adapter(trainer.model, adapter_dir, meta)
        write_json(
            out / TRAIN_LOG,
            {
                "command": command_line(),
                **result,
                "n_examples": len(examples),
                # Training rows, so this measures fit, not generalization (see tag_contrast).
                "tag_contrast": contrast,
                **clock.stop(),
            },
        )
    return adapter_dir
