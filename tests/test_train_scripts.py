"""The train/ scripts: every shipped recipe parses, the report and ship scripts, the one
definition of the default, and a kill harness over the three training steps."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ric.artifacts import RicMeta, read_jsonl
from ric.config import load_config
from ric.data import PrepareConfig
from ric.defaults import DEFAULT
from ric.mors import OnlineRecipe
from ric.normalization import RewardStats
from ric.sft import SFTRecipe

ROOT = Path(__file__).resolve().parents[1]


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


def test_the_default_recipes_agree_with_the_one_default():
    data = load_config(PrepareConfig, ROOT / "train/recipes/cpu_data.yaml")
    sft = load_config(SFTRecipe, ROOT / "train/recipes/cpu_sft.yaml")
    assert tuple(sft.rewards) == DEFAULT.rewards
    assert set(DEFAULT.rewards) <= set(data.rewards) == set(DEFAULT.candidate_rewards)
    for name in ("bench_soups", "bench_morlhf"):
        from ric.baselines import BENCH_RECIPES

        assert (
            tuple(load_config(BENCH_RECIPES[name], ROOT / f"train/recipes/{name}.yaml").rewards)
            == DEFAULT.rewards
        )
    # No data path of the old openers/primers lineage survives in a default recipe.
    text = "".join(p.read_text() for p in (ROOT / "train").rglob("*") if p.is_file())
    for old in ("openers", "primed", "DEFAULT_LENGTHS", "cap_sentences", "prefixes"):
        assert old not in text, old


def test_report_prints_the_guards_of_every_point():
    report = _load_script("report")
    g = {
        "relevance": 0.5,
        "top_opening_share": 0.1,
        "shared_opening_share": 0.05,
        "echo_rate": 0.0,
        "finished_share": 0.95,
        "distinct_2": 0.61,
        "top_opening": "i am so",
    }
    fronts = {
        "base": {"points": [{"weights": None, "guards": g}]},
        "ric": {
            "points": [{"weights": [0.0, 1.0], "guards": g}, {"weights": [1.0, 0.0], "guards": g}]
        },
    }
    rows = [
        r for r in report.guards_section(fronts) if r.startswith("| base") or r.startswith("| ric")
    ]
    assert len(rows) == 3 and rows[0].startswith(
        "| base | base | 0.500 | 10% | 5% | 0% | 95% | 0.61 |"
    )


def test_report_image_section_reads_the_shipped_image_model(tmp_path):
    import shutil

    report = _load_script("report")
    folder = tmp_path / "image"
    shutil.copytree(ROOT / "assets" / "image", folder)
    front = json.loads((folder / "front.json").read_text())
    (folder / "base_front.json").unlink(missing_ok=True)
    text = "\n".join(report.image_section(folder, tmp_path / "docs"))
    assert f"| {front['hypervolume']:.3f} |" in text
    assert "(null condition)" not in text and "../image/subjects.png" in text
    train = json.loads((folder / "model" / "ric.json").read_text())["extra"]["train"]
    assert f"**{train['sample_timing']['seconds']:.2f} s**" in text
    assert text.count("\n| [") == len(front["points"])
    # A prompted model: the share of images the classifier names, per weight.
    w_end = front["per_subject"]
    share = sum(p[-1]["named_rate"] for p in w_end.values()) / len(w_end)
    assert "| [1.0, 0.0] |" in text and f" {share:.0%} |" in text


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
    assert not (dest / "offline_front.json").exists()
    # Shipped with an offline-only front beside it, then without: the stale one goes.
    ship.main(
        [
            *argv,
            "--mapping",
            "l2",
            "--range-quantiles",
            "0.05",
            "0.95",
            "--offline-front",
            str(base),
        ]
    )
    assert (dest / "offline_front.json").exists()
    ship.main([*argv, "--mapping", "l2", "--range-quantiles", "0.05", "0.95"])
    assert not (dest / "offline_front.json").exists()
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


def test_report_splits_spearman_by_prompt_slice():
    """The report's slice check: the first 100 prompts steer, the rest are reversed here."""
    report = _load_script("report")
    w = [[x / 4, 1 - x / 4] for x in range(5)]
    up = np.array([[x, -x] for x in range(5)], float)
    per = np.concatenate([np.repeat(up[:, None], 100, 1), np.repeat(-up[:, None], 50, 1)], 1)
    front = {"points": [{"weights": x} for x in w], "per_prompt": {"achieved": per.tolist()}}
    assert report.slice_spearman(front) == ("1.00, 1.00 (100 prompts) | -1.00, -1.00 (50 prompts)")


def test_report_names_the_prompt_set_and_replies_per_prompt():
    report = _load_script("report")
    front = {"per_prompt": {"n_prompts": 50}, "settings": {"prompts": "x/unseen50.txt"}}
    assert report._prompts(front) == "50 (unseen50.txt)"
    assert (
        report._prompts({**front, "samples_per_prompt": 3}) == "50 (unseen50.txt, 3 replies each)"
    )
    assert report._prompts({"per_prompt": {"n_prompts": 60}, "settings": {}}) == "60"


def test_report_names_a_global_and_a_per_prompt_floor():
    report = _load_script("report")
    assert report._floor("relevance", 0.5661) == "relevance floor 0.566"
    per_prompt = report._floor("relevance", {"a": 0.4, "b": 0.6, "c": 0.5})
    assert per_prompt == "relevance floor of its own prompt (median 0.500)"


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
            "guard_failures": {},
        },
    ]
    cands[0]["guard_failures"] = {"[1.0, 0.0]": ["relevance 0.500 < 0.520"]}
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
    assert "w=[1.0, 0.0]: relevance 0.500 < 0.520" in rows[0] and "| none |" in rows[1]
    # Chosen again on the hand-written sets, it is headed as such, not as training prompts.
    assert "## Mapping range, chosen again on hand-written prompts" in report.calibration_section(
        {**cal, "prompts": "assets/prompts/unseen50.txt,assets/prompts/unseen60.txt"}
    )
    default = {**cal, "prompts": "assets/prompts/train.txt"}
    assert "## Mapping range, chosen on training prompts" in report.calibration_section(default)


def test_bad_recipe_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rte: 0.1\n")
    with pytest.raises(ValueError, match="unknown SFTRecipe fields"):
        load_config(SFTRecipe, bad)


# ---------------------------------------------------------------- kill harness


def _steps(tmp: Path, model: Path, prompts: Path, instructions: Path, tag: str) -> list:
    """The three training steps as commands, writing under tmp/<tag>."""
    d, s, o = tmp / tag / "data", tmp / tag / "sft", tmp / tag / "online"
    py = [sys.executable]
    small = ["--backend", "transformers", "--dtype", "float32", "--batch-size", "2"]
    return [
        py
        + [
            str(ROOT / "train/prepare_dataset.py"),
            "--out-dir",
            str(d),
            "--model",
            str(model),
            "--prompts",
            str(prompts),
            "--instructions",
            str(instructions),
            "--samples-per-prompt",
            "3",
            "--max-new-tokens",
            "8",
            "--chunk",
            "2",
            "--rewards",
            "brevity,positivity",
            *small,
        ],
        py
        + [
            str(ROOT / "train/sft.py"),
            "--data-dir",
            str(d),
            "--out-dir",
            str(s),
            "--model",
            str(model),
            "--rewards",
            "brevity,positivity",
            "--lora-r",
            "2",
            "--batch-size",
            "2",
            "--max-steps",
            "6",
            "--save-steps",
            "1",
            "--max-length",
            "64",
            "--learning-rate",
            "1e-3",
        ],
        py
        + [
            str(ROOT / "train/online.py"),
            "--data-dir",
            str(d),
            "--adapter",
            str(s / "adapter"),
            "--out-dir",
            str(o),
            "--n-prompts",
            "8",
            "--max-new-tokens",
            "8",
            "--chunk",
            "2",
            *small,
            "--sft",
            "{max_steps: 4, save_steps: 1, learning_rate: 1.0e-3, batch_size: 2}",
        ],
    ]


def _run(cmd, kill_after: float | None = None) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        return time.time() - t0
    err = proc.communicate(timeout=900)[1]
    assert proc.returncode == 0, err.decode()[-3000:]
    return time.time() - t0


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v.numpy() for k, v in load_file(folder / "adapter_model.safetensors").items()}


@pytest.mark.slow
def test_kill_harness_reruns_finish_with_the_same_rows_and_steps(tmp_path, tiny_model_dir):
    """Issue 18: kill -9 prepare_dataset.py, sft.py and online.py at random moments, three
    times each (RIC_KILLS sets how many: 7 gives 21 kills), then rerun to the end: the rows, steps and adapters equal an uninterrupted
    run's, and no temp file is left."""
    from training_helpers import INSTRUCTIONS, PROMPTS, ending_model

    model = ending_model(tiny_model_dir, tmp_path / "lm")
    prompts, instructions = tmp_path / "prompts.txt", tmp_path / "instructions.txt"
    prompts.write_text(PROMPTS)
    instructions.write_text(INSTRUCTIONS)
    ref = _steps(tmp_path, model, prompts, instructions, "ref")
    killed = _steps(tmp_path, model, prompts, instructions, "killed")
    rng = random.Random(int(os.environ.get("RIC_KILL_SEED", "0")))
    for whole, cmd in zip(ref, killed, strict=True):
        took = _run(whole)
        for _ in range(int(os.environ.get("RIC_KILLS", "3"))):
            _run(cmd, kill_after=rng.uniform(0.3, 1.0) * took)
        _run(cmd)
    r, k = tmp_path / "ref", tmp_path / "killed"
    for name in ("samples.jsonl", "scores.jsonl", "dataset.jsonl"):
        a, b = read_jsonl(r / "data" / name), read_jsonl(k / "data" / name)
        assert sorted(a, key=str) == sorted(b, key=str), name
        assert len({x["key"] for x in b}) == len(b)  # no duplicated rows
    for stage in ("sft", "online/iter_1/sft"):
        assert (
            json.loads((k / stage / "train_log.json").read_text())["steps"]
            == json.loads((r / stage / "train_log.json").read_text())["steps"]
        )
    assert read_jsonl(k / "online/iter_1/samples.jsonl") == read_jsonl(
        r / "online/iter_1/samples.jsonl"
    )
    for folder in ("sft/adapter", "online/adapter"):
        wa, wb = _weights(r / folder), _weights(k / folder)
        assert all(np.allclose(wa[n], wb[n], atol=1e-6) for n in wa), folder
    assert not list(k.rglob(".*.tmp"))
    log = json.loads((k / "data" / "data.json").read_text())
    assert log["attempts"] >= 2  # killed attempts are counted in the cost


def test_measure_rewards_writes_the_table_and_the_choice(tmp_path):
    from ric.artifacts import write_json, write_jsonl

    data = tmp_path / "data"
    rows = [
        {
            "key": f"{p}:{k}",
            "prompt": p,
            "response": "x",
            "raw": [base + k, -k, base],
            "instruction": "Be brief." if k % 2 else "",
            "n_tokens": 10 * (k + 1),
        }
        for p, base in (("p1", 0.0), ("p2", 1.0))
        for k in range(4)
    ]
    write_jsonl(data / "dataset.jsonl", rows)
    write_json(data / "data.json", {"reward_names": ["a", "b", "c"]})
    _load_script("measure_rewards").main(["--data", str(data), "--out", str(tmp_path / "R.md")])
    md = (tmp_path / "R.md").read_text()
    assert "**Chosen pair: a and b**" in md and "| c | 0.500 |" in md
    # What each hidden instruction did: k = 1, 3 -> a = base + 2, b = -2, 20 and 40 tokens.
    assert "| Be brief. | 4 | 2.500 | -2.000 | 0.500 | 30 |" in md
    assert "| (none) | 4 | 1.500 | -1.000 | 0.500 | 20 |" in md
    # Within a prompt, a "Be brief." answer (k = 1, 3) against a plain one (k = 0, 2): a is
    # higher in 3 of the 4 pairs, b in 1, c ties.
    assert "| Be brief. | 8 | 0.75 | 0.25 | 0.50 |" in md
    assert "| (none) | 8 | 0.25 | 0.75 | 0.50 |" in md
    assert json.loads((data / "rewards.json").read_text())["chosen"] == ["a", "b"]
    # Length: a grows with it (scipy's Spearman over all 8 answers: 0.919), c is constant
    # within each prompt.
    assert "| a | 1.225 | 0.700 .. 3.300 | 83% | +0.92 / +1.00 |" in md
    assert "| c | 0.500 | 0.000 .. 1.000 | 0% | +0.00 / - |" in md
    assert "No pair conflicts" not in md  # a and b: -1 within prompts
    # The default conditions on another pair (ric.defaults): the table says so.
    assert "The default conditions on positivity and brevity instead" in md

    # Two rewards that do not conflict: the table says conflict did not decide.
    for r in rows:
        r["raw"][1] = r["raw"][0] % 2
    write_jsonl(data / "dataset.jsonl", rows)
    _load_script("measure_rewards").main(["--data", str(data), "--out", str(tmp_path / "R.md")])
    assert "No pair conflicts within prompts" in (tmp_path / "R.md").read_text()
    # A hidden word bias makes a condition of its own: k = 3 -> a = base + 3, 40 tokens.
    for r in rows:
        if r["key"].endswith(":3"):
            r["word_bias"] = 2.0
    write_jsonl(data / "dataset.jsonl", rows)
    _load_script("measure_rewards").main(["--data", str(data), "--out", str(tmp_path / "R.md")])
    md = (tmp_path / "R.md").read_text()
    assert "| Be brief. + word bias 2 | 2 | 3.500 | 0.500 | 0.500 | 40 |" in md
    assert "| Be brief. | 2 | 1.500 | 0.500 | 0.500 | 20 |" in md


def test_report_runs_on_the_default_layout(tmp_path, capsys):
    """train/report.py over what train/run_default.sh leaves in runs/ (fake figures)."""
    from ric.artifacts import write_json

    runs = tmp_path / "runs"
    g = {
        "relevance": 0.5,
        "top_opening_share": 0.1,
        "top_opening": "i am so",
        "shared_opening_share": 0.05,
        "echo_rate": 0.0,
        "finished_share": 0.9,
        "distinct_2": 0.6,
    }
    write_json(
        runs / "data" / "data.json",
        {
            "config": {
                "max_prompts": 400,
                "samples_per_prompt": 4,
                "temperatures": [0.7, 1.0],
                "repetition_penalty": 1.1,
            },
            "source": {"instructions": ["", "Answer in detail."], "n_samples": 1600},
            "lengths": {
                "max_new_tokens": 640,
                "share_finished": 0.9,
                "n_tokens_quantiles": {"0.5": 200.0, "0.9": 500.0},
            },
            "guards": g,
            "n_rows": 1400,
            "reward_names": ["positivity", "brevity"],
            "reward_correlation": [[1, -0.2], [-0.2, 1]],
            "command": "c",
            "wall_seconds": 60,
            "cpu_seconds": 60,
        },
    )
    recipe = {
        "rewards": ["positivity", "brevity"],
        "data_dir": "runs/data",
        "lora_r": 16,
        "lora_alpha": 32,
        "learning_rate": 5e-4,
        "lr_scheduler": "linear",
        "batch_size": 8,
    }
    write_json(runs / "sft" / "adapter" / "ric.json", {"extra": {"recipe": recipe}})
    log = {
        "steps": 100,
        "n_examples": 1400,
        "train_loss": 1.5,
        "command": "c",
        "wall_seconds": 60,
        "cpu_seconds": 60,
        "tag_contrast": None,
    }
    write_json(runs / "sft" / "train_log.json", log)
    write_json(runs / "online" / "iter_1" / "sft" / "train_log.json", log)
    c = {"mean_nll_increase": 0.5, "sem": 0.1, "frac_positive": 0.75, "n_pairs": 24}
    c |= {"first_tokens": {"mean_nll_increase": 0.2}, "end_token": {"mean_nll_increase": 0.1}}
    (runs / "sft" / "contrast_log.jsonl").write_text(json.dumps({"step": 20, "farthest": c}) + "\n")
    write_json(
        runs / "online" / "iter_1" / "mors.json",
        {
            "generated": 384,
            "finished": 350,
            "trainable": 340,
            "kept": 200,
            "kept_total": 200,
            "mixed": 500,
            "quantile_thresholds": [0.5, 0.5],
            "wall_seconds": 1,
            "cpu_seconds": 1,
        },
    )
    pts = [
        {"weights": [w, 1 - w], "desired": [w, 1 - w], "achieved": [w, 1 - w], "guards": g}
        for w in (0.0, 0.5, 1.0)
    ]
    front = {
        "label": "RiC",
        "reward_names": ["positivity", "brevity"],
        "reference_point": [-2, -2],
        "hypervolume": 5.0,
        "sparsity": 0.1,
        "points": pts,
        "per_prompt": {"n_prompts": 60, "achieved": [[[0, 0]]] * 3},
        "settings": {"prompts": "assets/prompts/eval.txt", "max_prompts": 60},
        "controllability": {"spearman": [1.0, 1.0], "monotonicity": [1.0, 1.0]},
        "mapping": {"method": "l2", "range_quantiles": [0.05, 0.95]},
        "command": "c",
        "wall_seconds": 1,
        "cpu_seconds": 1,
    }
    write_json(runs / "eval_online" / "front.json", front)
    from ric.artifacts import write_jsonl

    write_jsonl(
        runs / "eval_online" / "samples.jsonl",
        [
            {
                "weights": [w, 1 - w],
                "prompt": q,
                "response": f"{q} reply at {w}",
                "achieved": [w, 0],
            }
            for w in (0.0, 0.5, 1.0)
            for q in ("first?", "second?", "third?")
        ],
    )
    out = tmp_path / "docs" / "TRAINING.md"
    report = _load_script("report")
    argv = ["--runs", str(runs), "--data", str(runs / "data"), "--stages", str(runs / "sft")]
    argv += ["--fronts", f"online={runs / 'eval_online'}", "--out", str(out), "--image", ""]
    report.main([*argv, "--examples", "online=2"])
    text = out.read_text()
    assert "## Example replies (RiC)" in text and "third?" not in text
    assert "- w = (1.0, 0.0), achieved (1.00, 0.00): second? reply at 1.0" in text
    assert '"Answer in detail."' in text and "90% of 1600 samples ended by themselves" in text
    assert "| online | [0.0, 1.0] | 0.500 | 10% | 5% | 0% | 90% | 0.60 |" in text
    assert "| 20 | +0.50 +- 0.10 | +0.20 | +0.10 | 75% |" in text  # sft's contrast_log.jsonl
    assert "## Quality guards" in capsys.readouterr().out
    assert "## Online MORS, online/iter_1" in text and "(stored)" not in text

    # A fresh checkout: the SFT and MORS runs are gone. Their cost rows and sections are
    # carried from the previous report, marked, and a second regeneration changes nothing.
    import shutil

    shutil.rmtree(runs / "sft")
    shutil.rmtree(runs / "online")
    report.main([*argv, "--examples", "online=2"])
    again = out.read_text()
    assert "| SFT (sft) (stored) | `c` | 1.0 min | 1.0 min |" in again
    assert "| MORS online/iter_1 (stored) |" in again
    assert "## SFT stages (stored)" in again and "## Online MORS, online/iter_1 (stored)" in again
    assert "| 20 | +0.50 +- 0.10 | +0.20 | +0.10 | 75% |" in again
    assert again.count(report.STORED_NOTE) == 3  # the rows' note and each section's
    assert "## Example replies (RiC)" in again and "(stored)" not in again.split("## Fronts")[1]
    report.main([*argv, "--examples", "online=2"])
    assert out.read_text() == again
    report.main([*argv, "--examples", "online=2", "--stored", ""])
    assert "(stored)" not in out.read_text()

    # Two MORS iterations evaluated under one label: the figure's legend tells them apart.
    shutil.copytree(runs / "eval_online", runs / "eval_online2")
    two = f"online={runs / 'eval_online'},online2={runs / 'eval_online2'}"
    report.main([*argv[:-4], "--fronts", two, *argv[-4:]])
    legend = (out.parent / "training_front.html").read_text()
    assert "RiC (online) front" in legend and "RiC (online2) front" in legend


def test_run_default_names_only_existing_scripts_and_recipes():
    import re

    text = (ROOT / "train" / "run_default.sh").read_text()
    paths = set(re.findall(r"(?:train|assets/prompts)/[\w/]+\.(?:py|yaml|txt)", text))
    assert {"train/prepare_dataset.py", "train/recipes/cpu_data.yaml", "train/ship.py"} <= paths
    assert all((ROOT / p).exists() for p in paths), [p for p in paths if not (ROOT / p).exists()]
    res = subprocess.run(["bash", "-n", str(ROOT / "train" / "run_default.sh")], check=False)
    assert res.returncode == 0


def test_ship_image_keeps_the_sampling_its_front_was_measured_with(tmp_path):
    import shutil

    ship = _load_script("ship")
    model = tmp_path / "model"
    shutil.copytree(ROOT / "assets" / "image" / "model", model)
    meta = json.loads((model / "ric.json").read_text())
    meta["extra"].pop("reward_guidance_scale", None)
    meta["extra"]["guidance_scale"] = 3.0
    (model / "ric.json").write_text(json.dumps(meta))
    ev = tmp_path / "ev"
    ev.mkdir()
    front = json.loads((ROOT / "assets" / "image" / "front.json").read_text())
    front["settings"] = {"method": "typical", "guidance_scale": 7.5, "reward_guidance_scale": 2.0}
    (ev / "front.json").write_text(json.dumps(front))
    for name in ("grid.png", "subjects.png"):
        (ev / name).write_bytes(b"png")
    base = ROOT / "assets" / "image" / "base_front.json"
    argv = ["--image", str(model), "--front", str(ev / "front.json"), "--base-front", str(base)]
    with pytest.raises(SystemExit, match="mapping 'typical', not 'l2'"):
        ship.main([*argv, "--mapping", "l2", "--dest", str(tmp_path / "out")])
    ship.main([*argv, "--mapping", "typical", "--dest", str(tmp_path / "out")])
    shipped = RicMeta.load(tmp_path / "out" / "model")
    assert shipped.mapping == "typical"
    assert shipped.extra["guidance_scale"] == 7.5 and shipped.extra["reward_guidance_scale"] == 2.0
    assert (tmp_path / "out" / "subjects.png").read_bytes() == b"png"


def test_report_names_the_hidden_conditions_of_the_data():
    report = _load_script("report")
    knobs = {"config": {"word_bias": [0, 2], "end_bias": [0, 5]}, "source": {"instructions": []}}
    text = report.hidden_conditions(knobs)
    assert "towards positive words of [0, 2]" in text and "towards end-of-text of [0, 5]" in text
    told = {"config": {}, "source": {"instructions": ["", "Be brief."]}}
    assert report.hidden_conditions(told).endswith('none, "Be brief."')
    assert "no hidden instruction" in report.hidden_conditions({"config": {}, "source": {}})
    assert '"Answer in detail."' in text  # the shipped ones are listed where none was used


def test_report_carries_table_rows_of_models_whose_runs_are_gone():
    report = _load_script("report")
    head = ["| model | hypervolume |", "|---|---|"]
    old = {"Fronts on held-out prompts": ["", *head, "| RiC (online2) | 5.27 |", "| RiC (x) | 1 |"]}
    new = ["## Fronts on held-out prompts", "", *head, "| RiC, new range (x) | 4.07 |", "", "| w |"]
    out = report.carry_table_rows(new, "Fronts on held-out prompts", old)
    # The gone model's row joins the first table, marked; the rewritten model's is not doubled.
    assert (
        out[5] == "| RiC (online2) (stored) | 5.27 |" and out[4] == "| RiC, new range (x) | 4.07 |"
    )
    assert len(out) == len(new) + 1 and out[-1] == "| w |"
    assert report.carry_table_rows(new, "Quality guards", old) == new  # no such section
