"""Reward-conditioned SFT on a tiny in-code model: LoRA only, resumable, one checkpoint rule."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from training_helpers import PROMPTS, REWARDS, ending_model, prepare_cfg, sft_recipe

from ric.artifacts import CHECKPOINT_DONE, RicMeta
from ric.data import prepare_dataset
from ric.normalization import RewardStats
from ric.sft import train_sft

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model_dir):
    return ending_model(tiny_model_dir, tmp_path_factory.mktemp("ending_lm"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, model_dir):
    prompts = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    prompts.write_text(PROMPTS)
    out = tmp_path_factory.mktemp("data")
    prepare_dataset(prepare_cfg(out, model_dir, prompts, samples_per_prompt=3))
    return out


def test_sft_trains_lora_only(tmp_path, model_dir, data_dir):
    adapter = train_sft(sft_recipe(tmp_path / "sft", model_dir, data_dir))
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    # LoRA B starts at zero: any non-zero B means the adapter trained.
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)
    meta = RicMeta.load(adapter)
    assert meta.reward_names == REWARDS and meta.base_model == str(model_dir)
    base_before = load_file(Path(model_dir) / "model.safetensors")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter)
    merged_base = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v
        for k, v in model.state_dict().items()
        if "lora_" not in k
    }
    for k, v in base_before.items():
        assert np.allclose(merged_base[k].numpy(), v.numpy()), f"base weight {k} changed"
    log = json.loads((tmp_path / "sft" / "train_log.json").read_text())
    assert log["steps"] == 2 and log["cpu_seconds"] > 0 and log["attempts"] == 1
    contrast = log["tag_contrast"]
    assert contrast["n_pairs"] > 0 and np.isfinite(contrast["mean_nll_increase"])
    # Every checkpoint the trainer finished is marked, the last step's included.
    ckpts = sorted((tmp_path / "sft" / "checkpoints").glob("checkpoint-*"))
    assert [c.name for c in ckpts] == ["checkpoint-1", "checkpoint-2"]
    assert all((c / CHECKPOINT_DONE).exists() for c in ckpts)
    assert not list(tmp_path.rglob(".*.tmp"))


def test_length_buckets_group_similar_lengths_in_random_step_order():
    from ric.sft import length_buckets

    lengths = [int(x) for x in np.random.default_rng(1).integers(5, 700, 96)]
    order = length_buckets(lengths, 8, seed=0)
    assert sorted(order) == list(range(96))
    steps = [[lengths[i] for i in order[k : k + 8]] for k in range(0, 96, 8)]
    spans = [max(s) - min(s) for s in steps]
    assert max(spans) < 150  # each step holds similar lengths
    means = [np.mean(s) for s in steps]
    # no drift: step order is unrelated to length (a sorted order would give rho = +-1)
    rho = np.corrcoef(np.argsort(np.argsort(means)), np.arange(len(means)))[0, 1]
    assert abs(rho) < 0.6
    assert order == length_buckets(lengths, 8, seed=0) != length_buckets(lengths, 8, seed=1)


def test_length_batches_in_bf16_train_and_the_cpu_recipe_reads_its_tags_by_vectors(
    tmp_path, model_dir, data_dir
):
    """Length batching and bf16 reach the trainer and it still trains; the CPU recipe mixes
    lengths (the brevity tag varies within a step), runs bf16 and adds reward vectors."""
    recipe = sft_recipe(tmp_path / "sft", model_dir, data_dir, group_by_length=True, bf16=True)
    train_sft(recipe)
    assert json.loads((tmp_path / "sft" / "train_log.json").read_text())["steps"] == 2
    import yaml

    cpu = yaml.safe_load((ROOT / "train" / "recipes" / "cpu_sft.yaml").read_text())
    assert cpu["group_by_length"] is False and cpu["bf16"] is True
    assert cpu["conditioning"]["vectors"] is True and cpu["targets"] == "instruction"


def test_sft_resumes_from_checkpoint(tmp_path, model_dir, data_dir, capfd):
    train_sft(sft_recipe(tmp_path, model_dir, data_dir, max_steps=2))
    train_sft(sft_recipe(tmp_path, model_dir, data_dir, max_steps=3))
    assert "resuming from" in capfd.readouterr().out
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["steps"] == 3 and log["attempts"] == 2


def test_rerun_after_the_final_checkpoint_trains_no_extra_step(tmp_path, model_dir, data_dir):
    """Issue 18: a kill after the last checkpoint (before the adapter) used to cost one more
    step on the rerun, and a different adapter."""
    whole = train_sft(sft_recipe(tmp_path / "whole", model_dir, data_dir, max_steps=3))
    killed = tmp_path / "killed"
    train_sft(sft_recipe(killed, model_dir, data_dir, max_steps=3))
    (killed / "train_log.json").unlink()
    import shutil

    shutil.rmtree(killed / "adapter")
    half = killed / "checkpoints" / "checkpoint-4"  # a save killed half-way: no done mark
    half.mkdir()
    (half / "trainer_state.json").write_text("{")
    again = train_sft(sft_recipe(killed, model_dir, data_dir, max_steps=3))
    log = json.loads((killed / "train_log.json").read_text())
    assert log["steps"] == 3 and not half.exists()
    a, b = (
        load_file(whole / "adapter_model.safetensors"),
        load_file(again / "adapter_model.safetensors"),
    )
    assert all(np.allclose(a[k].numpy(), b[k].numpy()) for k in a)


def test_rerun_of_a_finished_run_leaves_its_adapter_alone(tmp_path, model_dir, data_dir):
    adapter = train_sft(sft_recipe(tmp_path, model_dir, data_dir, max_steps=2))
    files = {f: f.stat().st_mtime_ns for f in adapter.iterdir()}
    log = (tmp_path / "train_log.json").read_text()
    assert train_sft(sft_recipe(tmp_path, model_dir, data_dir, max_steps=2)) == adapter
    assert {f: f.stat().st_mtime_ns for f in adapter.iterdir()} == files
    assert (tmp_path / "train_log.json").read_text() == log
    # continued to more steps: it trains again
    train_sft(sft_recipe(tmp_path, model_dir, data_dir, max_steps=3))
    assert json.loads((tmp_path / "train_log.json").read_text())["steps"] == 3


def test_baseline_extra_lands_in_the_adapter_metadata(tmp_path, model_dir, data_dir):
    recipe = sft_recipe(tmp_path, model_dir, data_dir, max_steps=1, conditioned=False)
    adapter = train_sft(recipe, extra={"baseline": {"kind": "x", "conditioned": False}})
    assert RicMeta.load(adapter).extra["baseline"]["kind"] == "x"


@pytest.mark.slow
def test_sft_under_accelerate_with_two_cpu_processes(tmp_path, model_dir, data_dir):
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(ROOT / "train" / "sft.py"),
        "--data-dir",
        str(data_dir),
        "--out-dir",
        str(tmp_path),
        "--model",
        str(model_dir),
        "--rewards",
        "brevity",
        "--lora-r",
        "2",
        "--batch-size",
        "2",
        "--max-steps",
        "2",
        "--max-length",
        "64",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((tmp_path / "train_log.json").read_text())["steps"] == 2


def test_contrast_pairs_farthest_takes_each_prompts_extremes():
    from ric.sft import contrast_pairs

    stats = RewardStats.fit(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 0.5]]), REWARDS)
    rows = [
        {"prompt": "p", "response": f"r{i}", "raw": raw}
        for i, raw in enumerate([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    ] + [{"prompt": "q", "response": "alone", "raw": [3.0, 0.5]}]
    (pair,) = contrast_pairs(rows, stats, 8, pairing="farthest")
    assert {pair[0]["response"], pair[1]["response"]} == {"r0", "r2"}
    assert len(contrast_pairs(rows, stats, 8)) == 1  # "q" has one row: no pair
    with pytest.raises(ValueError, match="pairing"):
        contrast_pairs(rows, stats, 8, pairing="nearest")


def test_instruction_contrast_pairs_answers_sampled_under_different_instructions(model_dir):
    from transformers import AutoModelForCausalLM

    from ric.conditioning import ConditioningFormat
    from ric.models import load_tokenizer
    from ric.sft import instruction_contrast

    tok = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    stats = RewardStats.fit(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), REWARDS)
    fmt = ConditioningFormat(style="chat", tag="<rm{i}_score>", position="user_end")

    def rows(instructions):
        return [
            {"prompt": p, "response": f"answer {i}", "raw": [float(i), float(i)], "instruction": s}
            for p in ("hello there", "what is up")
            for i, s in enumerate(instructions)
        ]

    result = instruction_contrast(model, tok, rows(["", "Be brief.", "Be warm."]), stats, fmt)
    assert result["n_pairs"] == 2 and np.isfinite(result["mean_nll_increase"])
    assert set(result) >= {"first_tokens", "end_token", "frac_positive"}
    # The farthest pair shares its instruction: nothing to contrast.
    assert (
        instruction_contrast(model, tok, rows(["Be brief.", "", "Be brief."]), stats, fmt) is None
    )


def test_monitor_logs_held_out_tag_contrast_and_trains_without_those_prompts(
    tmp_path, model_dir, data_dir
):
    from ric.data import load_dataset_rows
    from ric.sft import CONTRAST_LOG, hold_out_prompts

    rows = load_dataset_rows(data_dir, REWARDS)
    train, held = hold_out_prompts(rows, 2, seed=0)
    assert {r["prompt"] for r in held}.isdisjoint(r["prompt"] for r in train)
    assert len({r["prompt"] for r in held}) == 2 and len(train) + len(held) == len(rows)
    assert hold_out_prompts(rows, 2, seed=0) == (train, held)  # seeded
    with pytest.raises(ValueError, match="monitor_prompts"):
        hold_out_prompts(rows, len(rows), seed=0)

    recipe = sft_recipe(tmp_path, model_dir, data_dir, monitor_steps=1, monitor_prompts=2)
    train_sft(recipe)
    lines = [json.loads(s) for s in (tmp_path / CONTRAST_LOG).read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert all(line["farthest"]["n_pairs"] == 2 for line in lines)
    assert all(np.isfinite(line["farthest"]["mean_nll_increase"]) for line in lines)
    assert json.loads((tmp_path / "train_log.json").read_text())["n_examples"] == len(train)


def test_soft_target_loss_with_one_hot_targets_is_the_token_loss():
    import torch

    from ric.distill import soft_target_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, 3, 4, 5, -100], [-100, -100, 1, 2, 3]])
    ids = labels.clamp(min=0).unsqueeze(-1)
    probs = torch.ones(2, 5, 1)
    token = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1))
    assert soft_target_loss(logits, labels, ids, probs).item() == pytest.approx(token.item())
    # A spread target costs more than the one-hot one at the model's own argmax, and the hard
    # weight mixes the two linearly.
    two = torch.stack([ids[..., 0], (ids[..., 0] + 1) % 11], -1)
    half = torch.full((2, 5, 2), 0.5)
    soft = soft_target_loss(logits, labels, two, half).item()
    mixed = soft_target_loss(logits, labels, two, half, hard_weight=0.25).item()
    assert mixed == pytest.approx(0.75 * soft + 0.25 * token.item())


def test_sampler_targets_are_the_distribution_generate_samples_from(model_dir):
    """Temperature and repetition penalty as transformers' own logits processors apply them,
    token by token along the answer, the prompt counted as seen."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        RepetitionPenaltyLogitsProcessor,
        SequenceBiasLogitsProcessor,
        TemperatureLogitsWarper,
    )

    from ric.conditioning import format_plain_prompt
    from ric.distill import sampler_targets

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    row = {"prompt": "hello there", "instruction": "Be brief.", "temperature": 0.7}
    completion = "a b a b c" + tok.eos_token
    ids, probs = sampler_targets(model, tok, row, completion, k=5, repetition_penalty=1.3)
    prompt = format_plain_prompt(row["prompt"], tok, system=row["instruction"])
    p = tok(prompt, add_special_tokens=False).input_ids
    c = tok(completion, add_special_tokens=False).input_ids
    assert ids.shape == probs.shape == (len(c), 5)
    penalty, warp = RepetitionPenaltyLogitsProcessor(1.3), TemperatureLogitsWarper(0.7)

    def expected(bias=None):
        """transformers' own processors along the answer: (bias,) penalty, temperature."""
        for t in range(len(c)):
            prefix = torch.tensor([p + c[:t]])
            with torch.no_grad():
                logits = model(prefix).logits[:, -1]
            logits = bias(prefix, logits) if bias else logits
            yield torch.softmax(warp(prefix, penalty(prefix, logits)), -1)[0].topk(5)

    for t, top in enumerate(expected()):
        assert ids[t].tolist() == top.indices.tolist()
        expect = (top.values / top.values.sum()).numpy()
        assert np.allclose(probs[t].astype(float), expect, atol=2e-3)
    # A hidden word bias comes first, as transformers' sequence bias does.
    biased = {**row, "word_bias": 2.0}
    with pytest.raises(ValueError, match="word_ids"):
        sampler_targets(model, tok, biased, completion, k=5)
    words = [int(c[1]), int(c[3])]
    ids, probs = sampler_targets(model, tok, biased, completion, 5, 1.3, None, words)
    bias = SequenceBiasLogitsProcessor({(w,): 2.0 for w in words})
    assert ids.tolist() == [top.indices.tolist() for top in expected(bias)]
    # An end-of-text bias likewise, on the ids it names (ric.generation.eos_ids).
    ended = {**row, "end_bias": 3.0}
    with pytest.raises(ValueError, match="end_ids"):
        sampler_targets(model, tok, ended, completion, k=5)
    ids, probs = sampler_targets(model, tok, ended, completion, 5, 1.3, None, None, [int(c[2])])
    bias = SequenceBiasLogitsProcessor({(int(c[2]),): 3.0})
    assert ids.tolist() == [top.indices.tolist() for top in expected(bias)]
    # "instruction" targets: the model's own distribution under the instruction, unwarped.
    ids, probs = sampler_targets(model, tok, row, completion, k=5, temperature=1.0)
    with torch.no_grad():
        plain = torch.softmax(model(torch.tensor([p + c])).logits[0, len(p) - 1 : -1], -1)
    top = plain.topk(5)
    assert ids.tolist() == top.indices.tolist()
    expect = (top.values / top.values.sum(-1, keepdim=True)).numpy()
    assert np.allclose(probs.astype(float), expect, atol=2e-3)


def test_sft_on_sampler_targets_trains_lora_and_builds_targets_once(tmp_path, model_dir, data_dir):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    recipe = sft_recipe(tmp_path / "sft", model_dir, data, targets="sampler", target_k=4)
    adapter = train_sft(recipe)
    weights = load_file(adapter / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)
    chunks = sorted((data / "teacher_k4").glob("*.safetensors"))
    assert chunks and json.loads((data / "teacher_k4" / "targets.json").read_text())["k"] == 4
    stamp = [c.stat().st_mtime_ns for c in chunks]
    # The targets carry their own cost log, and the lineage charges them beside the SFT.
    from ric.runlog import clock_total, lineage_cpu_seconds

    built = clock_total(data / "teacher_k4")
    assert built["attempts"] == 1 and built["wall_seconds"] >= 0
    parts = lineage_cpu_seconds(adapter)
    assert parts[f"targets {data / 'teacher_k4'}"] == built["cpu_seconds"]
    train_sft(sft_recipe(tmp_path / "again", model_dir, data, targets="sampler", target_k=4))
    assert [c.stat().st_mtime_ns for c in chunks] == stamp  # reused, not rebuilt
    assert clock_total(data / "teacher_k4") == built  # and not charged again
    train_sft(sft_recipe(tmp_path / "instr", model_dir, data, targets="instruction", target_k=4))
    meta = json.loads((data / "instruction_k4" / "targets.json").read_text())
    assert meta["temperature"] == 1.0 and meta["repetition_penalty"] == 1.0
    with pytest.raises(ValueError, match="targets must be"):
        train_sft(sft_recipe(tmp_path / "bad", model_dir, data, targets="soft"))


def test_contrast_partners_pair_each_answer_with_its_prompts_farthest():
    from ric.sft import contrast_partners

    rows = [
        {"prompt": "a", "raw": [0.0, 0.0]},
        {"prompt": "a", "raw": [1.0, 0.0]},
        {"prompt": "a", "raw": [4.0, 4.0]},
        {"prompt": "b", "raw": [2.0, 2.0]},
        {"prompt": "c", "raw": [1.0, 1.0]},
        {"prompt": "c", "raw": [1.0, 1.0]},  # same tags: no partner
    ]
    stats = RewardStats.fit(np.array([r["raw"] for r in rows]), ["x", "y"])
    assert contrast_partners(rows, stats) == [2, 2, 0, None, None, None]


def test_tag_contrast_loss_is_sft_plus_a_fading_contrast_term():
    import torch

    from ric.sft import tag_contrast_loss

    torch.manual_seed(0)
    logits = torch.randn(4, 5, 7, requires_grad=True)
    labels = torch.tensor(
        [
            [-100, 1, 2, 3, -100],
            [-100, -100, 4, 5, 6],
            [-100, 1, 2, 3, -100],  # answer 0 under its partner's tags
            [-100, -100, -100, -100, -100],  # answer 1 has no partner
        ]
    )
    logp = torch.log_softmax(logits, -1)
    tok = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (labels != -100)
    sft = -tok[:2].sum() / 6
    assert tag_contrast_loss(logits, labels, 0.0, 10.0).item() == pytest.approx(sft.item())
    d = tok[0].sum() - tok[2].sum()
    term = 10.0 * torch.nn.functional.softplus(-d / 10.0) / 6
    got = tag_contrast_loss(logits, labels, 0.5, 10.0)
    assert got.item() == pytest.approx((sft + 0.5 * term).item(), rel=1e-5)
    # The term pushes the answer down under the partner's tags, and never harder per token
    # than `weight` times the SFT gradient.
    got.backward()
    swapped_grad = logits.grad[2].gather(-1, labels[2].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    assert (swapped_grad[labels[2] != -100] > 0).all()
    # Far past the margin, the term is flat: only the SFT loss is left.
    wide = logits.detach().clone()
    wide[2, torch.arange(5), labels[2].clamp(min=0)] -= 1000.0
    assert tag_contrast_loss(wide, labels, 0.5, 10.0).item() == pytest.approx(
        tag_contrast_loss(wide, labels, 0.0, 10.0).item(), abs=1e-4
    )


def test_sft_with_contrast_weight_trains_on_pairs(tmp_path, model_dir, data_dir):
    recipe = sft_recipe(tmp_path / "sft", model_dir, data_dir, contrast_weight=0.5)
    adapter = train_sft(recipe)
    weights = load_file(adapter / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)
    assert RicMeta.load(adapter).extra["recipe"]["contrast_weight"] == 0.5
    with pytest.raises(ValueError, match="contrast_margin > 0"):
        train_sft(sft_recipe(tmp_path / "bad", model_dir, data_dir, contrast_margin=0.0))
    with pytest.raises(ValueError, match="targets='tokens' only"):
        train_sft(
            sft_recipe(
                tmp_path / "bad", model_dir, data_dir, contrast_weight=0.5, targets="sampler"
            )
        )
