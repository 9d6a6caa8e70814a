"""Baselines on a tiny in-code model: Rewarded Soups, MORLHF (GRPO), prompt-only."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import ric.sft as training
from ric.artifacts import RicMeta, write_json, write_jsonl
from ric.baselines import (
    MorlhfRecipe,
    SoupsRecipe,
    load_morlhf,
    load_prompt_only,
    load_soup,
    normalized_reward_funcs,
    plain_prompt,
    preference_instruction,
    top_quantile_rows,
    train_morlhf,
    train_soup_ingredients,
)
from ric.conditioning import ConditioningFormat
from ric.evaluation import EvalConfig, evaluate_front
from ric.generation import GenerationSettings, generate
from ric.models import load_model
from ric.normalization import RewardStats
from ric.rewards import REWARDS as REWARDS_REGISTRY

NAMES = ["positivity", "brevity"]
PROMPTS = ["hello there", "my dog died", "explain how a bicycle works", "how are you today"]
GREEDY = GenerationSettings(max_new_tokens=6, do_sample=False)


def _vowel_share():
    """A test-only reward that varies even on a random tiny model's gibberish."""

    def fn(prompts, responses):
        return np.array([sum(c in "aeiou" for c in r) / (len(r) + 1) for r in responses])

    return fn


REWARDS_REGISTRY.setdefault("vowel_share", _vowel_share)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A prepared dataset as train/prepare_dataset.py writes it, with made-up rewards."""
    out = tmp_path_factory.mktemp("data")
    responses = ["i feel great", "the weather is sunny and bright", "sad", "hello", "no"]
    rng = np.random.default_rng(0)
    rows = [
        {
            "key": f"{k}",
            "prompt": PROMPTS[k % len(PROMPTS)],
            "response": responses[k % len(responses)],
            "raw": rng.normal(size=2).tolist(),
        }
        for k in range(24)
    ]
    write_jsonl(out / "dataset.jsonl", rows)
    write_json(out / "data.json", {"reward_names": NAMES, "cpu_seconds": 3.0})
    return out


@pytest.fixture(scope="module")
def soups(tmp_path_factory, tiny_model_dir, data_dir):
    recipe = SoupsRecipe(
        data_dir=str(data_dir),
        out_dir=str(tmp_path_factory.mktemp("soups")),
        model=str(tiny_model_dir),
        rewards=NAMES,
        keep_quantile=0.5,
        sft={
            "lora_r": 2,
            "lora_alpha": 4,
            "batch_size": 4,
            "max_steps": 2,
            "save_steps": 2,
            "logging_steps": 1,
            "learning_rate": 1e-2,
            "max_length": 64,
        },
    )
    return recipe, train_soup_ingredients(recipe)


def _meta(tiny_adapter_dir, model_dir):
    meta = RicMeta.load(tiny_adapter_dir)
    meta.base_model = str(model_dir)
    return meta


def test_top_quantile_rows_keep_the_best_of_each_reward():
    rows = [{"raw": [float(i), float(-i)]} for i in range(10)]
    stats = RewardStats.fit(np.array([r["raw"] for r in rows]), ["a", "b"])
    assert [r["raw"][0] for r in top_quantile_rows(rows, stats, 0, 0.7)] == [7, 8, 9]
    assert [r["raw"][1] for r in top_quantile_rows(rows, stats, 1, 0.7)] == [0, -1, -2]


def test_plain_examples_carry_no_reward_tags(tiny_tokenizer):
    fmt = ConditioningFormat()
    rows = [{"prompt": "hi <rm1_score> 9", "response": "hello", "raw": [0, 0]}]
    ex = training.build_sft_examples(rows, None, fmt, tiny_tokenizer, conditioned=False)[0]
    assert "<rm" not in ex["prompt"] and ex["completion"] == "hello<|im_end|>"
    assert ex["prompt"] == plain_prompt(tiny_tokenizer, "hi <rm1_score> 9", fmt)


def test_soup_ingredients_train_lora_only_without_tags(soups, tiny_model_dir):
    recipe, adapters = soups
    for name, adapter in zip(NAMES, adapters, strict=True):
        weights = load_file(adapter / "adapter_model.safetensors")
        assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)
        info = RicMeta.load(adapter).extra["baseline"]
        assert info["ingredient"] == name and info["conditioned"] is False
        assert 0 < info["n_rows"] < 24
        log = json.loads((adapter.parent / "train_log.json").read_text())
        assert log["steps"] == 2 and log["cpu_seconds"] > 0
    # A rerun finds both ingredients finished and trains nothing.
    again = train_soup_ingredients(recipe)
    assert again == adapters


def test_soup_is_the_exact_interpolation_of_the_deltas(soups, tiny_model_dir, tiny_adapter_dir):
    _, adapters = soups
    soup = load_soup(_meta(tiny_adapter_dir, tiny_model_dir), adapters, dtype="float32")
    mix = soup.use([0.3, 0.7])
    layer = next(m for m in soup.model.modules() if hasattr(m, "get_delta_weight") and m.lora_A)
    d0, d1 = (layer.get_delta_weight(n).detach() for n in soup.ingredients)
    assert d0.abs().sum() > 0 and d1.abs().sum() > 0
    assert np.allclose(layer.get_delta_weight(mix).detach(), 0.3 * d0 + 0.7 * d1, atol=1e-6)
    texts, desired, achieved = soup.generate_batch(PROMPTS[:2], [0.5, 0.5], GREEDY)
    assert len(texts) == 2 and achieved.shape == (2, 2) and desired.shape == (2,)
    assert list(soup.model.peft_config) == [*soup.ingredients, soup._mix]  # old mixes deleted


def test_soup_at_a_corner_equals_its_ingredient(soups, tiny_model_dir, tiny_adapter_dir):
    _, adapters = soups
    soup = load_soup(_meta(tiny_adapter_dir, tiny_model_dir), adapters, dtype="float32")
    inputs = [plain_prompt(soup.tokenizer, p, soup.fmt) for p in PROMPTS]
    enc = soup.tokenizer(inputs, return_tensors="pt", padding=True, add_special_tokens=False)
    corners = {}
    for w, adapter in (([1.0, 0.0], adapters[0]), ([0.0, 1.0], adapters[1])):
        texts, _, _ = soup.generate_batch(PROMPTS, w, GREEDY, progress=False)
        model, tok = load_model(str(tiny_model_dir), adapter=str(adapter))
        assert texts == generate(model, tok, inputs, GREEDY, progress=False)
        with torch.no_grad():
            corners[w[0]] = soup.model(**enc).logits
            assert torch.allclose(corners[w[0]], model(**enc).logits, atol=1e-5)
    assert not torch.allclose(corners[1.0], corners[0.0], atol=1e-5)  # the two differ


def test_soup_front_through_evaluate_front(soups, tiny_model_dir, tiny_adapter_dir, tmp_path):
    _, adapters = soups
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS))
    soup = load_soup(_meta(tiny_adapter_dir, tiny_model_dir), adapters, dtype="float32")
    cfg = EvalConfig(
        adapter=None,
        prompts=str(prompts),
        max_prompts=2,
        points=3,
        max_new_tokens=4,
        batch_size=4,
        dtype="float32",
        label="Rewarded Soups",
        out=str(tmp_path / "ev"),
    )
    front = evaluate_front(cfg, soup)
    assert [p["weights"] for p in front["points"]] == [[0, 1], [0.5, 0.5], [1, 0]]
    assert front["label"] == "Rewarded Soups" and "spearman" in front["controllability"]
    assert (tmp_path / "ev" / "front.json").exists()
    # An ingredient retrained in place: the sweep's samples are stale, so a resume is refused
    # (cfg.adapter is None here: the policy's own adapters are what the check must cover).
    weights = Path(adapters[1]) / "adapter_model.safetensors"
    before = weights.stat()
    os.utime(weights, (before.st_atime, before.st_mtime + 60))
    try:
        with pytest.raises(ValueError, match="served_mtimes differ"):
            evaluate_front(cfg, soup)
    finally:
        os.utime(weights, (before.st_atime, before.st_mtime))
    assert evaluate_front(cfg, soup)["hypervolume"] == front["hypervolume"]  # resumed as it was


def test_preference_instruction():
    assert (
        preference_instruction([0.7, 0.3], NAMES)
        == "Priority: 70% be positive and upbeat, 30% be brief."
    )
    assert preference_instruction([1, 0], ["brevity", "novelty"]) == (
        "Priority: 100% be brief, 0% score high on novelty."
    )
    with pytest.raises(ValueError):
        preference_instruction([1.0], NAMES)


def test_prompt_only_puts_the_instruction_in_the_system_turn(
    tiny_model_dir, tiny_adapter_dir, monkeypatch
):
    policy = load_prompt_only(_meta(tiny_adapter_dir, tiny_model_dir), dtype="float32")
    seen = []
    real = policy.engine.complete
    monkeypatch.setattr(
        policy.engine, "complete", lambda x, *a, **k: seen.extend(x) or real(x, *a, **k)
    )
    texts, _, achieved = policy.generate_batch(PROMPTS[:2], [0.7, 0.3], GREEDY)
    assert len(texts) == 2 and achieved.shape == (2, 2)
    assert seen[0].startswith("<|im_start|>system\nPriority: 70% be positive and upbeat, 30% be")
    assert "hello there" in seen[0] and "<rm" not in seen[0]
    with pytest.raises(ValueError, match="cannot replace it"):  # its system turn is the method
        policy.complete_batch(PROMPTS[:1], [0.7, 0.3], GREEDY, system="Stay on topic.")


def test_normalized_reward_funcs():
    stats = RewardStats(NAMES, mean=[0.0, 0.5], std=[1.0, 0.25], low=[-1, -1], high=[1, 1])
    pos, brev = normalized_reward_funcs(NAMES, stats)
    assert pos.__name__ == "positivity" and brev.__name__ == "brevity"
    completions = [
        [{"role": "assistant", "content": ""}],
        [{"role": "assistant", "content": "a b"}],
    ]
    z = brev(prompts=[[], []], completions=completions, query=["q", "q"], trainer_state=None)
    # brevity: 1 for "", 1 / (1 + 2/50) for two tokens; z = (raw - 0.5) / 0.25
    assert np.allclose(z, [(1 - 0.5) / 0.25, (1 / 1.04 - 0.5) / 0.25])


def test_morlhf_grpo_two_steps(tmp_path, tiny_model_dir, tiny_adapter_dir):
    names = ["vowel_share", "brevity"]
    stats = RewardStats.fit(np.random.default_rng(0).normal(size=(50, 2)) * 0.1 + 0.5, names)
    recipe = MorlhfRecipe(
        out_dir=str(tmp_path),
        model=str(tiny_model_dir),
        prompts=str(_prompts(tmp_path)),
        rewards=names,
        weights=[[0.25, 0.75]],
        max_steps=2,
        num_generations=2,
        batch_size=4,
        max_completion_length=8,
        temperature=1.0,
        top_p=1.0,
        learning_rate=1e-2,
        lora_r=2,
        lora_alpha=4,
        save_steps=2,
        logging_steps=1,
    )
    adapter = train_morlhf(recipe, [0.25, 0.75], stats)
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)  # trained

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    base = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v
        for k, v in model.state_dict().items()
        if "lora_" not in k
    }
    for k, v in load_file(Path(tiny_model_dir) / "model.safetensors").items():
        assert np.allclose(base[k].numpy(), v.numpy()), f"base weight {k} changed"

    log = json.loads((tmp_path / "w0.25_0.75" / "train_log.json").read_text())
    assert log["steps"] == 2 and log["cpu_seconds"] > 0 and log["weights"] == [0.25, 0.75]
    assert any("rewards/vowel_share/mean" in h for h in log["log_history"])
    assert RicMeta.load(adapter).extra["baseline"]["weights"] == [0.25, 0.75]

    policy = load_morlhf(_meta(tiny_adapter_dir, tiny_model_dir), [adapter], dtype="float32")
    texts, _, _ = policy.generate_batch(PROMPTS[:2], [0.25, 0.75], GREEDY)
    assert len(texts) == 2
    with pytest.raises(ValueError, match="no MORLHF run"):
        policy.generate_batch(PROMPTS[:2], [0.5, 0.5], GREEDY)


def _prompts(folder: Path) -> Path:
    path = folder / "train_prompts.txt"
    path.write_text("\n".join(PROMPTS * 2))
    return path


# ------------------------------------------------ baselines served by another engine (onnx)


def _greedy_texts(policy, w):
    return policy.generate_batch(PROMPTS, w, GREEDY, progress=False)[0]


def test_soup_on_the_onnx_engine_answers_as_the_transformers_soup(
    soups, tiny_model_dir, tiny_adapter_dir, tmp_path
):
    _, adapters = soups
    meta = _meta(tiny_adapter_dir, tiny_model_dir)
    exact = load_soup(meta, adapters, dtype="float32")
    with pytest.raises(ValueError, match="mix_dir"):
        load_soup(meta, adapters, dtype="float32", backend="onnx-fp32")
    served = load_soup(
        meta, adapters, dtype="float32", backend="onnx-fp32", mix_dir=tmp_path / "mixes"
    )
    w = [0.3, 0.7]
    assert _greedy_texts(served, w) == _greedy_texts(exact, w)
    assert served.engine.label == "onnx fp32"
    mix = tmp_path / "mixes" / "w0.30_0.70"
    info = RicMeta.load(mix).extra["baseline"]
    assert info["kind"] == "rewarded_soups_mix" and info["weights"] == w
    assert sorted(p.name for p in mix.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "ric.json",
    ]
    # The saved mix is the exact interpolation of the deltas, and is made once.
    model, _ = load_model(str(tiny_model_dir), adapter=str(mix), dtype="float32")
    key, layer = next(
        (k, m) for k, m in model.named_modules() if hasattr(m, "get_delta_weight") and m.lora_A
    )
    ref = served.model.get_submodule(key)
    d0, d1 = (ref.get_delta_weight(n).detach() for n in served.ingredients)
    mixed = layer.get_delta_weight("default").detach()
    assert d0.abs().sum() > 0 and d1.abs().sum() > 0
    assert np.allclose(mixed, 0.3 * d0 + 0.7 * d1, atol=1e-6)
    assert not np.allclose(mixed, 0.7 * d0 + 0.3 * d1, atol=1e-6)
    made = (mix / "adapter_model.safetensors").stat().st_mtime_ns
    served.use([1.0, 0.0])
    assert served.saved_mix(w) == mix
    assert (mix / "adapter_model.safetensors").stat().st_mtime_ns == made
    assert list(served.model.peft_config) == served.ingredients  # temporary mixes deleted


def test_morlhf_and_prompt_only_on_the_onnx_engine(
    soups, tiny_model_dir, tiny_adapter_dir, tmp_path
):
    import shutil

    _, ingredients = soups
    runs = []
    for w, src in zip(([1.0, 0.0], [0.0, 1.0]), ingredients, strict=True):
        dst = tmp_path / f"w{w[0]}"
        shutil.copytree(src, dst)
        meta = RicMeta.load(dst)
        meta.extra = {"baseline": {"kind": "morlhf", "weights": w}}
        meta.save(dst)
        runs.append(dst)
    meta = _meta(tiny_adapter_dir, tiny_model_dir)
    exact = load_morlhf(meta, runs, dtype="float32")
    served = load_morlhf(meta, runs, dtype="float32", backend="onnx-fp32")
    for w in ([1.0, 0.0], [0.0, 1.0]):
        assert _greedy_texts(served, w) == _greedy_texts(exact, w)
    with pytest.raises(ValueError, match="no MORLHF run"):
        served.use([0.5, 0.5])
    plain = load_prompt_only(meta, dtype="float32")
    fast = load_prompt_only(meta, dtype="float32", backend="onnx-fp32")
    assert fast.engine.label == "onnx fp32"
    assert _greedy_texts(fast, [0.7, 0.3]) == _greedy_texts(plain, [0.7, 0.3])


def test_baselines_train_on_the_rows_ric_trained_on(data_dir, tiny_adapter_dir):
    """RiC's statistics are fitted on its data less the prompts its monitor held out: the
    baselines take the same rows, so the shared normalization is RiC's own."""
    from ric.baselines import ric_training_rows, shared_stats
    from ric.sft import SFTRecipe, training_rows

    meta = RicMeta.load(tiny_adapter_dir)
    meta.reward_names = NAMES
    everything = ric_training_rows(meta, data_dir)
    assert len(everything) == 24  # no monitor recorded: every row
    recipe = SFTRecipe(data_dir=str(data_dir), rewards=NAMES, monitor_steps=10, monitor_prompts=1)
    meta.extra = {"recipe": {**dataclasses.asdict(recipe), "not_a_field": 1}}
    rows = ric_training_rows(meta)
    assert rows == training_rows(recipe)[0] and 0 < len(rows) < 24
    assert {r["prompt"] for r in everything} - {r["prompt"] for r in rows}  # one held out
    fitted = shared_stats(rows, NAMES)
    assert not np.allclose(fitted.mean, shared_stats(everything, NAMES).mean)
