"""Shared pieces of the training-pipeline tests (test_data, test_sft, test_mors, kill harness):
a tiny model that ends its answers, a reward that moves on gibberish, small recipes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ric.rewards import REWARDS as REWARDS_REGISTRY

PROMPTS = (
    "hello there\nmy dog died\n# a comment\n\nexplain how a bicycle works\n"
    "the weather is sunny\nhow are you today\nwhat is great\n"
)
INSTRUCTIONS = "# hidden\n(none)\nBe brief.\nBe cheerful.\n"


def _vowel_share():
    """A test-only reward that varies even on a random tiny model's gibberish."""

    def fn(prompts, responses):
        return np.array([sum(c in "aeiou" for c in r) / (len(r) + 1) for r in responses])

    return fn


def _a_share():
    """Another test-only reward, scored beside the conditioned ones (a floor's reward)."""

    def fn(prompts, responses):
        return np.array([r.count("a") / (len(r) + 1) for r in responses])

    return fn


REWARDS_REGISTRY.setdefault("vowel_share", _vowel_share)
REWARDS_REGISTRY.setdefault("a_share", _a_share)
REWARDS = ["vowel_share", "brevity"]


def ending_model(src: Path, dst: Path, steps: int = 60) -> Path:
    """The tiny LM taught, in a second, to answer in a few words and then end by itself: a
    random tiny LM almost never samples end-of-text, and a pipeline that trains only on
    finished answers needs some."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src)
    words = [
        "the",
        "weather",
        "is",
        "sunny",
        "and",
        "bright",
        "i",
        "feel",
        "great",
        "my",
        "dog",
        "how",
        "are",
        "you",
        "today",
    ]
    rng = np.random.default_rng(0)
    texts = []
    for p in PROMPTS.splitlines():
        if p and not p.startswith("#"):
            for k in range(12):
                answer = " ".join(rng.choice(words, rng.integers(1, 7)))
                # Some prompts carry reward tags (as RiC's do), some a system turn (as the
                # hidden sampling instructions do).
                user = p if k % 3 else f"{p} <rm1_score> {k / 10} <rm2_score> -{k / 5}"
                msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
                if k % 3 == 1:
                    msgs.insert(
                        0, {"role": "system", "content": ["Be brief.", "Be cheerful."][k % 2]}
                    )
                texts.append(tok.apply_chat_template(msgs, tokenize=False))
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(steps):
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


def prepare_cfg(out, model_dir, prompts, instructions=None, **kw):
    """A PrepareConfig for the tiny model: 2 answers per prompt, an 8-token cap."""
    from ric.data import PrepareConfig

    fields = dict(
        out_dir=str(out),
        model=str(model_dir),
        prompts=str(prompts),
        instructions=str(instructions) if instructions else None,
        samples_per_prompt=2,
        max_new_tokens=8,
        batch_size=4,
        chunk=4,
        dtype="float32",
        backend="transformers",
        rewards=REWARDS,
    )
    return PrepareConfig(**{**fields, **kw})


def sft_recipe(out, model_dir, data_dir, **kw):
    """An SFTRecipe for the tiny model: LoRA rank 2, 2 steps, a checkpoint every step."""
    from ric.sft import SFTRecipe

    fields = dict(
        data_dir=str(data_dir),
        out_dir=str(out),
        model=str(model_dir),
        rewards=REWARDS,
        lora_r=2,
        lora_alpha=4,
        batch_size=4,
        max_steps=2,
        save_steps=1,
        logging_steps=1,
        learning_rate=1e-2,
        max_length=64,
    )
    return SFTRecipe(**{**fields, **kw})
