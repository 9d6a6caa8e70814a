"""The whole RiC pipeline on a tiny in-code model: prepare, SFT, online MORS, evaluate."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

import ric.training as training
from ric.artifacts import RicMeta, read_jsonl
from ric.config import load_config
from ric.evaluation import (
    CalibrateConfig,
    EvalConfig,
    calibrate_range,
    evaluate_front,
    evaluate_tag_contrast,
    pick_range,
)
from ric.normalization import RewardStats
from ric.rewards import REWARDS as REWARDS_REGISTRY
from ric.training import (
    OnlineRecipe,
    PrepareConfig,
    SFTRecipe,
    frontier_targets,
    keep_mask,
    mors_iteration,
    prepare_dataset,
    train_sft,
)

ROOT = Path(__file__).resolve().parents[1]


def _vowel_share():
    """A test-only reward that varies even on a random tiny model's gibberish."""

    def fn(prompts, responses):
        return np.array([sum(c in "aeiou" for c in r) / (len(r) + 1) for r in responses])

    return fn


REWARDS_REGISTRY.setdefault("vowel_share", _vowel_share)
REWARDS = ["vowel_share", "brevity"]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text(
        "hello there\nmy dog died\n# a comment\n\nexplain how a bicycle works\n"
        "the weather is sunny\nhow are you today\nwhat is great\n"
    )
    return path


def _prepare_cfg(out, model_dir, prompts, **kw):
    return PrepareConfig(
        out_dir=str(out),
        model=str(model_dir),
        prompts=str(prompts),
        samples_per_prompt=2,
        max_new_tokens=6,
        batch_size=4,
        chunk=4,
        dtype="float32",
        **{"prefixes": False, "lengths": [], "rewards": REWARDS, **kw},
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tiny_model_dir, prompts_file):
    out = tmp_path_factory.mktemp("data")
    prepare_dataset(_prepare_cfg(out, tiny_model_dir, prompts_file))
    return out


def _sft(out, model_dir, data_dir, **kw):
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
    return train_sft(SFTRecipe(**{**fields, **kw}))


def test_prepare_writes_dataset_and_stats(data_dir):
    rows = read_jsonl(data_dir / "dataset.jsonl")
    assert len(rows) == 12 and all(len(r["raw"]) == 2 for r in rows)
    stats = RewardStats.load(data_dir)
    assert stats.names == REWARDS and stats.n_samples == 12
    meta = json.loads((data_dir / "data.json").read_text())
    assert np.array(meta["reward_correlation"]).shape == (2, 2)


def test_killed_prepare_resumes_without_redoing_work(
    tmp_path, tiny_model_dir, prompts_file, monkeypatch
):
    real_generate, calls = training.generate, []

    def dying_generate(*args, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(len(args[2]))
        return real_generate(*args, **kw)

    monkeypatch.setattr(training, "generate", dying_generate)
    cfg = _prepare_cfg(tmp_path, tiny_model_dir, prompts_file)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(cfg)
    before = read_jsonl(tmp_path / "samples.jsonl")
    assert 0 < len(before) < 12 and not (tmp_path / "dataset.jsonl").exists()

    calls.clear()
    monkeypatch.setattr(
        training, "generate", lambda *a, **k: calls.append(len(a[2])) or real_generate(*a, **k)
    )
    prepare_dataset(cfg)
    after = read_jsonl(tmp_path / "samples.jsonl")
    assert after[: len(before)] == before  # finished samples kept as they were
    assert sum(calls) == 12 - len(before)  # and only the rest generated
    assert len({r["key"] for r in after}) == 12
    # A third run has nothing left to do: no generation, no rescoring.
    calls.clear()
    prepare_dataset(cfg)
    assert calls == [] and len(read_jsonl(tmp_path / "scores.jsonl")) == 12


def test_sentence_prefixes_cut_at_sentence_ends_only():
    import random

    rng = random.Random(0)
    text = "Here is the plan for you.\n\n1. Do this first.\n2. Then that! Done now?"
    cuts = {c for _ in range(50) for c in training.sentence_prefixes(text, rng)}
    assert cuts == {
        "Here is the plan for you.",
        "Here is the plan for you.\n\n1. Do this first.",
        "Here is the plan for you.\n\n1. Do this first.\n2. Then that!",
    }
    # k distinct cuts, shortest first; never more than there are sentence ends.
    two = training.sentence_prefixes(text, rng, k=2)
    assert len(two) == 2 and len(two[0]) < len(two[1])
    assert len(training.sentence_prefixes(text, rng, k=9)) == 3
    assert training.sentence_prefixes("Just one sentence here.", rng) == []
    assert training.sentence_prefixes("No. Way.", rng) == []  # cuts under 3 words are dropped
    # An opener alone is no answer: cuts keep 3 words past it.
    opener = "Sadly, this is hard."
    t = opener + " Call her. Then call a friend today. Rest."
    assert training.sentence_prefixes(t, rng, k=9, opener=opener) == [
        opener + " Call her. Then call a friend today."
    ]


def test_responses_that_echo_their_hint_are_dropped():
    assert training.echoes_hint({"hint": "Be brief.", "response": "OK. be brief it is"})
    assert not training.echoes_hint({"hint": "Be brief.", "response": "Brief answer."})
    assert not training.echoes_hint({"hint": "", "response": "anything"})


def _fake_generation(monkeypatch, reply: str) -> list:
    """Every sampled response is `reply`; returns the list that collects the model inputs."""
    seen = []

    def fake_generate(model, tok, inputs, settings, batch_size, progress=True):
        seen.extend(inputs)
        return [reply] * len(inputs)

    monkeypatch.setattr(training, "generate", fake_generate)
    return seen


def test_openers_prime_samples_and_prefixes_add_rows(
    tmp_path, tiny_model_dir, prompts_file, monkeypatch
):
    seen = _fake_generation(monkeypatch, "is on the way. It takes two days. Then it ends.")
    cfg = _prepare_cfg(
        tmp_path,
        tiny_model_dir,
        prompts_file,
        openers=["Sadly,"],
        hints=["Be brief."],
        prefixes=2,
    )
    prepare_dataset(cfg)
    rows = read_jsonl(tmp_path / "dataset.jsonl")
    full = [r for r in rows if not training.is_prefix_row(r)]
    cut = [r for r in rows if training.is_prefix_row(r)]
    assert len(full) == 12 and len(cut) == 24
    # The opener ends the generation prompt and starts the kept response; the hint sits in
    # the user turn and never in the response.
    assert all(x.endswith("Sadly,") and "Be brief." in x for x in seen)
    assert all(r["response"].startswith("Sadly, is on the way.") for r in full)
    assert all(
        r["response"] in {"Sadly, is on the way.", "Sadly, is on the way. It takes two days."}
        for r in cut
    )
    # Shorter prefixes score higher on brevity, and a rerun rescores nothing.
    assert min(r["raw"][1] for r in cut) > max(r["raw"][1] for r in full)
    meta = json.loads((tmp_path / "data.json").read_text())
    assert np.array(meta["reward_correlation_samples"]).shape == (2, 2)
    n_scores = len(read_jsonl(tmp_path / "scores.jsonl"))
    prepare_dataset(cfg)
    assert len(read_jsonl(tmp_path / "scores.jsonl")) == n_scores == 36


def test_length_primers_follow_openers_and_bring_their_hint(
    tmp_path, tiny_model_dir, prompts_file, monkeypatch
):
    seen = _fake_generation(monkeypatch, "it is fine.")
    cfg = _prepare_cfg(
        tmp_path,
        tiny_model_dir,
        prompts_file,
        openers=["Sadly,"],
        hints=["Be nice."],
        lengths=[["In short:", "One sentence."], ["Here is more.", ""]],
    )
    prepare_dataset(cfg)
    rows = read_jsonl(tmp_path / "dataset.jsonl")
    short = [r for r in rows if "In short:" in r["response"]]
    more = [r for r in rows if "Here is more." in r["response"]]
    assert short and more and len(short) + len(more) == len(rows)
    # The primer comes after the opener, is kept, and brings its hint; an empty hint keeps
    # the drawn one.
    assert all(r["response"].startswith("Sadly, In short: it is fine.") for r in short)
    assert all(r["hint"] == "One sentence." and r["opener"] == "Sadly, In short:" for r in short)
    assert all(r["hint"] == "Be nice." for r in more)
    assert sum("One sentence." in x for x in seen) == len(short)


def test_prepare_config_rejects_bad_prefixes_and_lengths():
    with pytest.raises(ValueError, match="prefixes"):
        PrepareConfig(prefixes=-1)
    with pytest.raises(ValueError, match="length entry"):
        PrepareConfig(lengths=["In short:"])


def test_cap_sentences_keeps_n_sentences_past_the_primer():
    lengths = [["In short:", "h", 1], ["Detailed:", "h"]]
    rows = [
        {"opener": "Sadly. In short:", "response": "Sadly. In short: do it now. Then rest. Bye."},
        {"opener": "Detailed:", "response": "Detailed: do it now. Then rest. Bye now."},
        {"opener": "In short:", "response": "In short: do it now."},
    ]
    out = training.cap_sentences(rows, lengths)
    assert [r["response"] for r in out] == [
        "Sadly. In short: do it now.",
        "Detailed: do it now. Then rest. Bye now.",
        "In short: do it now.",
    ]
    assert rows[0]["response"].endswith("Bye.")  # inputs untouched


def test_preference_dataset_input(tmp_path, tiny_model_dir):
    src = tmp_path / "hh.jsonl"
    rows = [
        {
            "chosen": f"\n\nHuman: question {i}?\n\nAssistant: a kind answer {i}",
            "rejected": f"\n\nHuman: question {i}?\n\nAssistant: no {i}",
        }
        for i in range(3)
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = prepare_dataset(
        PrepareConfig(out_dir=str(tmp_path / "d"), hf_dataset=str(src), rewards=REWARDS)
    )
    data = read_jsonl(out / "dataset.jsonl")
    assert len(data) == 6 and data[0]["prompt"].endswith("\n\nAssistant:")
    assert data[0]["response"] == "a kind answer 0"


def test_sft_trains_lora_only(tmp_path, tiny_model_dir, data_dir):
    adapter = _sft(tmp_path / "sft", tiny_model_dir, data_dir)
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    # LoRA B starts at zero: any non-zero B means the adapter trained.
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)
    meta = RicMeta.load(adapter)
    assert meta.reward_names == REWARDS and meta.base_model == str(tiny_model_dir)
    base_before = load_file(Path(tiny_model_dir) / "model.safetensors")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    merged_base = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v
        for k, v in model.state_dict().items()
        if "lora_" not in k
    }
    for k, v in base_before.items():
        assert np.allclose(merged_base[k].numpy(), v.numpy()), f"base weight {k} changed"
    log = json.loads((tmp_path / "sft" / "train_log.json").read_text())
    assert log["steps"] == 2 and log["cpu_seconds"] > 0
    contrast = log["tag_contrast"]
    assert contrast["n_pairs"] > 0 and np.isfinite(contrast["mean_nll_increase"])


def test_sft_resumes_from_checkpoint(tmp_path, tiny_model_dir, data_dir, capfd):
    _sft(tmp_path, tiny_model_dir, data_dir, max_steps=2)
    assert (tmp_path / "checkpoints" / "checkpoint-2").exists()
    _sft(tmp_path, tiny_model_dir, data_dir, max_steps=3)
    assert "resuming from" in capfd.readouterr().out
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["steps"] == 3


def test_mors_and_evaluate(tmp_path, tiny_model_dir, data_dir, prompts_file):
    adapter = _sft(tmp_path / "sft", tiny_model_dir, data_dir)
    recipe = OnlineRecipe(
        data_dir=str(data_dir),
        adapter=str(adapter),
        out_dir=str(tmp_path / "on"),
        n_prompts=8,
        max_new_tokens=6,
        batch_size=4,
        prompts=str(prompts_file),
        dtype="float32",
        sft={"max_steps": 2, "learning_rate": 1e-2, "batch_size": 4},
    )
    new_adapter, kept = mors_iteration(recipe, str(adapter), 1, [])
    mors = json.loads((tmp_path / "on" / "iter_1" / "mors.json").read_text())
    assert mors["generated"] == 8 and mors["mixed"] >= mors["kept"]
    # Sampling cost is kept on disk as it accrues, so a resumed iteration still counts it.
    cost = json.loads((tmp_path / "on" / "iter_1" / "sample_cost.json").read_text())
    assert cost["cpu"] == mors["cpu_seconds"] > 0
    before = load_file(Path(adapter) / "adapter_model.safetensors")
    after = load_file(Path(new_adapter) / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not np.allclose(before[k].numpy(), after[k].numpy()) for k in before)
    # The MORS adapter's lineage: the offline stage, then the iteration, each with its data.
    chain = training.adapter_lineage(new_adapter)
    assert [c["out_dir"] for c in chain] == [str(tmp_path / "sft"), str(tmp_path / "on/iter_1/sft")]
    assert {c["data_dir"] for c in chain} == {str(data_dir)}
    parts = training.lineage_cpu_seconds(new_adapter)
    assert list(parts) == [
        f"data {data_dir}",
        f"SFT {tmp_path / 'sft'}",
        f"MORS {tmp_path / 'on/iter_1'}",
        f"SFT {tmp_path / 'on/iter_1/sft'}",
    ]
    assert all(v > 0 for v in parts.values())

    cfg = EvalConfig(
        adapter=new_adapter,
        prompts=str(prompts_file),
        max_prompts=3,
        points=3,
        max_new_tokens=4,
        batch_size=8,
        dtype="float32",
        out=str(tmp_path / "ev"),
    )
    front = evaluate_front(cfg)
    assert [p["weights"] for p in front["points"]] == [[0, 1], [0.5, 0.5], [1, 0]]
    assert len(front["reference_point"]) == 2 and front["hypervolume"] >= 0
    assert "spearman" in front["controllability"]
    base = evaluate_front(EvalConfig(**{**cfg.__dict__, "base": True, "out": str(tmp_path / "b")}))
    assert len(base["points"]) == 1 and base["points"][0]["weights"] is None
    # The mapping actually used is recorded (the artifact's default here), none for the base.
    assert front["mapping"]["method"] == RicMeta.load(new_adapter).mapping and not base["mapping"]
    assert len(front["mapping"]["low"]) == 2
    # skip_prompts evaluates a second held-out slice; skipping past the end is an error.
    sliced = EvalConfig(
        **{**cfg.__dict__, "base": True, "skip_prompts": 1, "out": str(tmp_path / "s")}
    )
    evaluate_front(sliced)
    used = {r["prompt"] for r in read_jsonl(tmp_path / "s" / "samples.jsonl")}
    assert used == set(training.read_prompts(prompts_file)[1:4])
    with pytest.raises(ValueError, match="no prompts left"):
        evaluate_front(EvalConfig(**{**sliced.__dict__, "skip_prompts": 10**6}))

    # Calibration: one sweep per candidate range (per-reward pairs allowed), one pick, on disk.
    cands = [[0.1, 0.9], [[0.2, 0.9], [0.5, 0.95]]]
    cal = calibrate_range(
        CalibrateConfig(**{**cfg.__dict__, "candidates": cands, "out": str(tmp_path / "cal")})
    )
    fronts = [
        json.loads((tmp_path / "cal" / f"range{k}" / "front.json").read_text()) for k in (0, 1)
    ]
    assert [c["range_quantiles"] for c in cal["candidates"]] == cands
    assert cal["chosen"] == fronts[pick_range(fronts)]["mapping"]
    stats = RewardStats.from_dict(RicMeta.load(new_adapter).stats)
    assert np.allclose(fronts[1]["mapping"]["low"], stats.quantile([0.2, 0.5]))
    assert json.loads((tmp_path / "cal" / "calibration.json").read_text()) == cal
    bad = CalibrateConfig(
        **{**cfg.__dict__, "candidates": [[0.1, 0.9], [0.9, 0.1]], "out": str(tmp_path / "bad")}
    )
    with pytest.raises(ValueError, match="range_quantiles"):
        calibrate_range(bad)
    assert not (tmp_path / "bad").exists()  # refused before any sweep

    tc = evaluate_tag_contrast(
        EvalConfig(adapter=new_adapter, tag_contrast=str(data_dir), out=str(tmp_path / "tc"))
    )
    saved = json.loads((tmp_path / "tc" / "tag_contrast.json").read_text())
    assert saved["n_pairs"] == tc["n_pairs"] > 0 and np.isfinite(saved["mean_nll_increase"])


def test_three_objective_recipe_runs_end_to_end(tmp_path, tiny_model_dir, prompts_file):
    """cpu_sft_3obj.yaml on a tiny budget: its own rewards, prepare -> SFT -> MORS -> the
    13-point evaluation sweep."""
    recipe = load_config(SFTRecipe, ROOT / "train" / "recipes" / "cpu_sft_3obj.yaml")
    assert len(recipe.rewards) == 3
    data = prepare_dataset(
        _prepare_cfg(tmp_path / "d", tiny_model_dir, prompts_file, rewards=list(recipe.rewards))
    )
    small = dict(lora_r=2, lora_alpha=4, batch_size=4, max_steps=2, save_steps=2, max_length=64)
    recipe = SFTRecipe(
        **{
            **recipe.__dict__,
            **small,
            "model": str(tiny_model_dir),
            "data_dir": str(data),
            "out_dir": str(tmp_path / "sft"),
            "lora_layers": None,
            "bf16": False,
        }
    )
    adapter = train_sft(recipe)
    online = OnlineRecipe(
        data_dir=str(data),
        adapter=str(adapter),
        out_dir=str(tmp_path / "on"),
        n_prompts=6,
        max_new_tokens=4,
        batch_size=6,
        prompts=str(prompts_file),
        dtype="float32",
        sft={"max_steps": 1, "batch_size": 4},
    )
    new_adapter, _ = mors_iteration(online, str(adapter), 1, [])
    front = evaluate_front(
        EvalConfig(
            adapter=new_adapter,
            prompts=str(prompts_file),
            max_prompts=2,
            max_new_tokens=4,
            batch_size=16,
            dtype="float32",
            out=str(tmp_path / "ev"),
        )
    )
    assert front["reward_names"] == list(recipe.rewards)
    assert len(front["points"]) == 13 and len(front["reference_point"]) == 3
    assert all(len(p["achieved"]) == 3 for p in front["points"])


def test_pick_range_prefers_the_worst_objective_then_hypervolume():
    def front(sp, hv):
        return {"controllability": {"spearman": sp}, "hypervolume": hv}

    fronts = [front([1.0, 0.5], 9.0), front([0.9, 0.8], 5.0), front([0.8, 0.9], 6.0)]
    assert pick_range(fronts) == 2  # 0.8 worst in both: the larger front wins
    assert pick_range(fronts[:2]) == 1  # a flat objective loses whatever the hypervolume


def test_frontier_targets_and_filter():
    rng = np.random.default_rng(0)
    t = frontier_targets([-1, -2, -3], [1, 2, 3], 500, rng)
    at_high = np.isclose(t, [1, 2, 3])
    assert np.all(at_high.sum(axis=1) >= 2)  # all but one dimension on the upper boundary
    stats = RewardStats.fit(rng.normal(size=(1000, 2)), ["a", "b"])
    q = stats.quantile(0.7)
    z = np.array([[q[0] + 0.1, -5], [-5, q[1] + 0.1], [q[0] - 0.1, q[1] - 0.1]])
    assert keep_mask(z, stats).tolist() == [True, True, False]


@pytest.mark.parametrize("recipe", sorted((ROOT / "train" / "recipes").glob("*.yaml")))
def test_every_shipped_recipe_parses(recipe):
    from ric.conditioning import ConditioningFormat
    from ric.diffusion import ImageRecipe

    name = recipe.stem
    if name.startswith("bench_"):
        from ric.baselines import BENCH_RECIPES, SoupsRecipe

        cfg = load_config(BENCH_RECIPES[name], recipe)
        if isinstance(cfg, SoupsRecipe):
            SFTRecipe(**cfg.sft)  # the ingredients' SFT overrides must be SFTRecipe fields
        return
    if name in ("cpu_image", "paper_sd15"):
        cls = ImageRecipe
    elif "_data" in name:
        cls = PrepareConfig
    elif "online" in name:
        cls = OnlineRecipe
    else:
        cls = SFTRecipe
    cfg = load_config(cls, recipe)
    if isinstance(cfg, SFTRecipe):
        ConditioningFormat.from_dict(cfg.conditioning)
    if isinstance(cfg, OnlineRecipe):
        SFTRecipe(**cfg.sft)  # the continued-SFT overrides must be SFTRecipe fields


def test_bad_recipe_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rte: 0.1\n")
    with pytest.raises(ValueError, match="unknown SFTRecipe fields"):
        load_config(SFTRecipe, bad)


@pytest.mark.slow
def test_sft_under_accelerate_with_two_cpu_processes(tmp_path, tiny_model_dir, data_dir):
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
        str(tiny_model_dir),
        "--rewards",
        "vowel_share,brevity",
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


def test_report_image_section_reads_the_shipped_image_model(tmp_path):
    import shutil

    report = _load_script("report")
    folder = tmp_path / "image"
    shutil.copytree(ROOT / "assets" / "image", folder)
    front = json.loads((folder / "front.json").read_text())
    (folder / "base_front.json").unlink(missing_ok=True)
    text = "\n".join(report.image_section(folder, tmp_path / "docs"))
    assert f"| {front['hypervolume']:.3f} |" in text
    assert "(null condition)" not in text and "../image/grid.png" in text
    train = json.loads((folder / "model" / "ric.json").read_text())["extra"]["train"]
    assert f"**{train['sample_timing']['seconds']:.2f} s**" in text
    assert text.count("\n| [") == len(front["points"])


def _load_script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"train_{name}", ROOT / "train" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ship_text_sets_inference_defaults_checked_against_the_front(tmp_path, tiny_adapter_dir):
    ship = _load_script("ship")
    front = tmp_path / "ev" / "front.json"
    settings = {"method": "l2", "range_quantiles": [0.05, 0.95]}
    front.parent.mkdir()
    names = RicMeta.load(tiny_adapter_dir).reward_names
    front.write_text(json.dumps({"hypervolume": 1.0, "settings": settings, "reward_names": names}))
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"hypervolume": 0.5, "settings": {}}))
    dest = tmp_path / "assets"
    argv = [
        "--adapter",
        str(tiny_adapter_dir),
        "--front",
        str(front),
        "--base-front",
        str(base),
        "--dest",
        str(dest),
    ]
    with pytest.raises(SystemExit, match="range_quantiles"):
        ship.main([*argv, "--mapping", "l2", "--range-quantiles", "0.1", "0.9"])
    with pytest.raises(SystemExit, match="mapping 'l2', not 'ric'"):
        ship.main([*argv, "--mapping", "ric"])
    ship.main([*argv, "--mapping", "l2", "--range-quantiles", "0.05", "0.95"])
    meta = RicMeta.load(dest / "adapter")
    stats = RewardStats.from_dict(meta.stats)
    before = RewardStats.load(tiny_adapter_dir)
    assert meta.mapping == "l2" and stats.range_quantiles == [0.05, 0.95]
    assert np.allclose(stats.low, before.quantile(0.05)) and np.allclose(stats.mean, before.mean)
    assert RewardStats.load(dest / "adapter").low == stats.low  # reward_stats.json agrees
    assert RicMeta.load(tiny_adapter_dir).mapping == "ric"  # the source is left as it was
    assert json.loads((dest / "base_meta.json").read_text())["mapping"] == "l2"
    assert json.loads((dest / "front.json").read_text())["hypervolume"] == 1.0
    assert sorted(p.name for p in (dest / "adapter").iterdir()) == sorted(ship.KEEP)
    # One LO HI pair per reward, checked against the front the same way.
    pairs = [[0.2, 0.95], [0.5, 0.95]]
    front.write_text(
        json.dumps(
            {
                "hypervolume": 1.0,
                "settings": {**settings, "range_quantiles": pairs},
                "reward_names": names,
            }
        )
    )
    with pytest.raises(SystemExit):
        ship.main([*argv, "--mapping", "l2", "--range-quantiles", "0.2", "0.95", "0.5"])
    ship.main([*argv, "--mapping", "l2", "--range-quantiles", "0.2", "0.95", "0.5", "0.95"])
    stats = RewardStats.from_dict(RicMeta.load(dest / "adapter").stats)
    assert stats.range_quantiles == pairs and np.allclose(stats.low, before.quantile([0.2, 0.5]))


def test_ship_image_copies_model_front_and_grid(tmp_path, tiny_adapter_dir):
    ship = _load_script("ship")
    model = tmp_path / "model"
    model.mkdir()
    (model / "ric.json").write_text((tiny_adapter_dir / "ric.json").read_text())
    (model / "weights.safetensors").write_bytes(b"x")
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "front.json").write_text(json.dumps({"settings": {}}))
    (ev / "grid.png").write_bytes(b"png")
    dest = tmp_path / "assets" / "image"
    ship.main(
        [
            "--image",
            str(model),
            "--front",
            str(ev / "front.json"),
            "--base-front",
            str(ev / "front.json"),
            "--dest",
            str(dest),
        ]
    )
    assert (dest / "grid.png").read_bytes() == b"png"
    assert (dest / "model" / "weights.safetensors").exists() and (dest / "base_front.json").exists()
    assert not (dest / "base_meta.json").exists()


def test_resumed_sweep_with_other_settings_is_refused(tmp_path):
    from ric.evaluation import check_resume

    check_resume(tmp_path, {"seed": 0, "stats": {"mean": [0.1]}})
    (tmp_path / "samples.jsonl").write_text('{"weights": null}\n')
    check_resume(tmp_path, {"seed": 0, "stats": {"mean": [0.1]}})  # same sweep: resumes
    with pytest.raises(ValueError, match="stats differ"):
        check_resume(tmp_path, {"seed": 0, "stats": {"mean": [0.2]}})
    (tmp_path / "sweep.json").unlink()
    with pytest.raises(ValueError, match="unknown sweep"):
        check_resume(tmp_path, {"seed": 0})


def test_probe_tags_reports_both_ends_of_every_tag(tmp_path, tiny_model_dir, data_dir, capsys):
    import yaml

    adapter = _sft(tmp_path / "sft", tiny_model_dir, data_dir)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {"data_dir": str(data_dir), "model": str(tiny_model_dir), "rewards": REWARDS}
        )
    )
    probe = _load_script("probe_tags")
    probe.main(
        ["--checkpoint", str(adapter), "--recipe", str(recipe), "--texts", "a b", "--rows", "2"]
        + ["--table", REWARDS[1]]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(out) == sorted(f"a b | {n}" for n in REWARDS)
    assert all(len(v) == 2 and all(np.isfinite(x) and x < 0 for x in v) for v in out.values())
    # After an opener: the conditional log-likelihood of the text alone, not of opener + text.
    args = ["--checkpoint", str(adapter), "--recipe", str(recipe), "--rows", "2"]
    probe.main([*args, "--texts", "a b c d", "--others", "0.5"])
    whole = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    probe.main([*args, "--texts", " c d", "--after", "a b", "--others", "0.5"])
    tail = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    probe.main([*args, "--texts", "a b", "--others", "0.5"])
    head = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for n in REWARDS:
        parts = np.add(head[f"a b | {n}"], tail[f" c d | {n}"])
        assert np.allclose(parts, whole[f"a b c d | {n}"], atol=0.05)
    with pytest.raises(SystemExit):
        probe.main(["--checkpoint", str(tmp_path), "--recipe", str(recipe), "--texts", "a"])


def test_report_splits_spearman_by_prompt_slice():
    """The report's slice check: the first 100 prompts steer, the rest are reversed here."""
    report = _load_script("report")
    w = [[x / 4, 1 - x / 4] for x in range(5)]
    up = np.array([[x, -x] for x in range(5)], float)
    per = np.concatenate([np.repeat(up[:, None], 100, 1), np.repeat(-up[:, None], 50, 1)], 1)
    front = {"points": [{"weights": x} for x in w], "per_prompt": {"achieved": per.tolist()}}
    assert report.slice_spearman(front) == ("1.00, 1.00 (100 prompts) | -1.00, -1.00 (50 prompts)")


def test_report_calibration_section_marks_the_choice():
    report = _load_script("report")
    cands = [
        {
            "range_quantiles": [0.5, 0.95],
            "method": "l2",
            "hypervolume": 6.0,
            "spearman": [0.8, 0.9],
        },
        {
            "range_quantiles": [[0.2, 0.95], [0.5, 0.95]],
            "method": "l2",
            "hypervolume": 5.0,
            "spearman": [0.95, 0.9],
        },
    ]
    cal = {
        "candidates": cands,
        "chosen": {"range_quantiles": cands[1]["range_quantiles"]},
        "rule": "r",
        "prompts": "train.txt",
        "max_prompts": 100,
        "skip_prompts": 0,
    }
    rows = [r for r in report.calibration_section(cal) if r.startswith("| [")]
    assert len(rows) == 2 and rows[1].endswith("**yes** |") and not rows[0].endswith("**yes** |")
    assert "0.95, 0.90" in rows[1] and "first 100 prompts of train.txt" in "\n".join(
        report.calibration_section(cal)
    )
