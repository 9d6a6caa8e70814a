"""Soft targets for RiC's SFT on the model's own answers (docs/METHOD.md section 4, "targets").

SFT on an answer the model sampled itself pushes each token towards the one drawn at random from
the model's own distribution: in expectation that gradient is only the difference between the
sampler (hidden instruction, temperature, repetition penalty) and the model, but each draw adds
noise as large as the sampler's entropy, about 1.4 nats a token against some 0.03 nats a token
of signal about the answer's condition (docs/training_summary.md). Training on the sampler's
whole next-token distribution along the same answer (its top `k` tokens, renormalized) is that
loss's expectation over each draw, the answer's prefix and tags held fixed: the answer, its
reward tags and the prompt the student sees are unchanged; only the one-hot target becomes the
distribution the token was drawn from. It gives up hindsight (the tags also record which way
the draws went), hence `hard_target_weight` in ric.sft.

`sampler_targets` recomputes that distribution exactly as ric.data sampled: the sampling prompt
with its hidden instruction, the row's word bias, temperature, and transformers' repetition
penalty over the prompt and the answer so far.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ric.artifacts import read_json, write_json
from ric.conditioning import format_plain_prompt
from ric.data import BIASES, bias_token_ids
from ric.runlog import RunClock


def sampler_targets(
    model,
    tokenizer,
    row: dict,
    completion: str,
    k: int = 32,
    repetition_penalty: float = 1.0,
    temperature: float | None = None,
    word_ids: list[int] | None = None,
    end_ids: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, probs), each (len(completion tokens), k): the top-k of the distribution each
    completion token was sampled from (float16 probabilities renormalized over the k).
    temperature: None = the row's own; 1.0 with no penalty = what the hidden instruction alone
    made of the model's distribution (targets "instruction"). word_ids: the tokens the row's
    "word_bias" was added to (ric.rewards.positive_word_ids), needed when it has one; end_ids
    likewise for its "end_bias" (ric.generation.eos_ids)."""
    import torch

    prompt = format_plain_prompt(row["prompt"], tokenizer, system=row.get("instruction") or None)
    p = tokenizer(prompt, add_special_tokens=False).input_ids
    c = tokenizer(completion, add_special_tokens=False).input_ids
    ids = torch.tensor([p + c], device=model.device)
    with torch.no_grad():
        logits = model(ids).logits[0, len(p) - 1 : -1].float()
    for name, ids in zip(BIASES, (word_ids, end_ids), strict=True):
        if row.get(name):  # before the penalty, as transformers orders them
            if not ids:
                what = name.replace("bias", "ids")
                raise ValueError(f"row {row.get('key')} was sampled with a {name}: pass {what}")
            logits[:, torch.tensor(ids)] += float(row[name])
    if repetition_penalty != 1.0:
        # transformers' RepetitionPenaltyLogitsProcessor: every token already in the input
        # (prompt included) has its logit divided (positive) or multiplied (negative).
        seen = torch.zeros(logits.shape[-1], dtype=torch.bool)
        seen[torch.tensor(p)] = True
        for t in range(len(c)):
            row_logits = logits[t]
            penalized = torch.where(
                row_logits > 0, row_logits / repetition_penalty, row_logits * repetition_penalty
            )
            logits[t] = torch.where(seen, penalized, row_logits)
            seen[c[t]] = True
    t = temperature if temperature is not None else float(row.get("temperature") or 1.0)
    probs = torch.softmax(logits / t, dim=-1)
    top = probs.topk(k, dim=-1)
    q = top.values / top.values.sum(-1, keepdim=True)
    return top.indices.numpy().astype(np.int32), q.numpy().astype(np.float16)


def targets_folder(data_dir: str | Path, targets: str, k: int) -> Path:
    """Where build_targets keeps a data set's soft targets of kind `targets` (ric.sft's
    "sampler" or "instruction")."""
    return Path(data_dir) / f"{'instruction' if targets == 'instruction' else 'teacher'}_k{k}"


def build_targets(
    data_dir: str | Path,
    rows: list[dict],
    completions: list[str],
    model_path: str,
    k: int = 32,
    chunk: int = 64,
    instruction_only: bool = False,
) -> Path:
    """DATA/teacher_k{k}/ (instruction_only: DATA/instruction_k{k}/): the sampler's top-k
    targets of every row, in resumable chunks (one safetensors file per `chunk` rows, written
    whole). Needs rows with "temperature" and, optionally, "instruction" (ric.data's samples).
    instruction_only: at temperature 1 without the repetition penalty."""
    import torch
    from safetensors.numpy import save_file
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM

    from ric.models import load_tokenizer

    out = targets_folder(data_dir, "instruction" if instruction_only else "sampler", k)
    out.mkdir(parents=True, exist_ok=True)
    config = read_json(Path(data_dir) / "data.json")["config"]
    penalty = 1.0 if instruction_only else float(config.get("repetition_penalty", 1.0))
    temperature = 1.0 if instruction_only else None
    tok = load_tokenizer(model_path)
    ids_of = bias_token_ids(tok, [n for n in BIASES if any(r.get(n) for r in rows)])
    model = clock = None
    starts = range(0, len(rows), chunk)
    for start in tqdm(starts, desc="sampler targets", unit="chunk"):
        name = out / f"{start:06d}.safetensors"
        if name.exists():
            continue
        if model is None:
            # their own cost log: every SFT on this data set reuses them (ric.runlog lineage)
            clock = RunClock(out)
            model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
        tensors = {}
        for i in range(start, min(start + chunk, len(rows))):
            ids, q = sampler_targets(
                model,
                tok,
                rows[i],
                completions[i],
                k,
                penalty,
                temperature,
                ids_of.get("word_bias"),
                ids_of.get("end_bias"),
            )
            tensors[f"{rows[i]['key']}/ids"], tensors[f"{rows[i]['key']}/probs"] = ids, q
        tmp = name.with_suffix(".partial")  # a killed run leaves no half-written chunk
        save_file(tensors, str(tmp))
        os.replace(tmp, name)
        clock.tick()
    if clock is not None:
        clock.stop()
    meta = {"k": k, "repetition_penalty": penalty, "temperature": temperature, "n_rows": len(rows)}
    write_json(out / "targets.json", meta)
    return out


def load_targets(folder: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """key -> (ids, probs) of every row build_targets wrote."""
    from safetensors.numpy import load_file

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        t = load_file(str(f))
        for name in t:
            key, what = name.rsplit("/", 1)
            if what == "ids":
                out[key] = (t[name], t[f"{key}/probs"])
    return out


def soft_target_loss(logits, labels, target_ids, target_probs, hard_weight: float = 0.0):
    """Mean over completion tokens of the cross-entropy against the sampler's top-k
    distribution, mixed with `hard_weight` of the ordinary one-hot loss.

    logits (B, T, V); labels (B, T), -100 outside the completion, already aligned with logits
    (labels[:, t] is the token logits[:, t] predicts); target_ids / target_probs (B, T, k) at
    the same positions (anything outside the completion is ignored)."""
    import torch

    mask = labels != -100
    logp = torch.log_softmax(logits.float(), dim=-1)
    soft = -(target_probs.float() * logp.gather(-1, target_ids.long())).sum(-1)
    loss = soft
    if hard_weight:
        hard = -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        loss = (1 - hard_weight) * soft + hard_weight * hard
    return (loss * mask).sum() / mask.sum().clamp(min=1)
