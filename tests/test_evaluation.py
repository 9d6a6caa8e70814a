"""Preference sweeps on a tiny in-code model: fronts, guards, calibration, resume checks."""

import json
from pathlib import Path

import numpy as np
import pytest
from training_helpers import PROMPTS, ending_model, prepare_cfg, sft_recipe

from ric.artifacts import RicMeta, read_jsonl
from ric.data import prepare_dataset, read_prompts
from ric.evaluation import (
    CalibrateConfig,
    EvalConfig,
    calibrate_range,
    check_resume,
    evaluate_front,
    evaluate_tag_contrast,
    pick_model,
    pick_range,
    point_failures,
)
from ric.normalization import RewardStats
from ric.quality import GUARDS
from ric.sft import train_sft
from ric.steering import SteerableModel


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("eval")
    model = ending_model(tiny_model_dir, root / "lm")
    prompts = root / "prompts.txt"
    prompts.write_text(PROMPTS)
    data = prepare_dataset(prepare_cfg(root / "data", model, prompts, samples_per_prompt=3))
    adapter = train_sft(sft_recipe(root / "sft", model, data, learning_rate=1e-3))
    return {"prompts": prompts, "data": data, "adapter": adapter}


def eval_cfg(setup, out, **kw):
    fields = dict(
        adapter=str(setup["adapter"]),
        prompts=str(setup["prompts"]),
        max_prompts=4,
        points=3,
        max_new_tokens=8,
        batch_size=8,
        dtype="float32",
        backend="transformers",
        out=str(out),
    )
    return EvalConfig(**{**fields, **kw})


def test_front_carries_every_guard_at_every_point_and_the_base(tmp_path, setup):
    front = evaluate_front(eval_cfg(setup, tmp_path / "ev"))
    assert [p["weights"] for p in front["points"]] == [[0, 1], [0.5, 0.5], [1, 0]]
    assert len(front["reference_point"]) == 2 and "spearman" in front["controllability"]
    base = evaluate_front(eval_cfg(setup, tmp_path / "b", base=True))
    assert len(base["points"]) == 1 and base["points"][0]["weights"] is None
    saved = [json.loads((tmp_path / d / "front.json").read_text()) for d in ("ev", "b")]
    for f in saved:
        for p in f["points"]:
            assert set(GUARDS) <= set(p["guards"]), p["guards"]
            assert 0 <= p["guards"]["finished_share"] <= 1
    rows = read_jsonl(tmp_path / "ev" / "samples.jsonl")
    assert all({"n_tokens", "finished"} <= set(r) for r in rows)
    # The mapping actually used is recorded (the artifact's default here), none for the base.
    assert front["mapping"]["method"] == RicMeta.load(setup["adapter"]).mapping
    assert not base["mapping"] and front["cpu_seconds"] > 0
    assert front["engine"] == base["engine"] == "transformers float32"  # what generated it


def test_several_replies_a_prompt_are_averaged_per_prompt(tmp_path, setup):
    front = evaluate_front(eval_cfg(setup, tmp_path / "k", max_prompts=3, samples=2))
    rows = read_jsonl(tmp_path / "k" / "samples.jsonl")
    prompts = read_prompts(setup["prompts"])[:3]
    for p in front["points"]:
        mine = [r for r in rows if r["weights"] == p["weights"]]
        assert sorted(r["prompt"] for r in mine) == sorted(prompts * 2)
        # Each prompt's reward is the mean of its two replies; the point's mean is theirs.
        per = [np.mean([r["achieved"] for r in mine if r["prompt"] == q], axis=0) for q in prompts]
        k = front["points"].index(p)
        assert np.allclose(front["per_prompt"]["achieved"][k], np.round(per, 3))
        assert np.allclose(p["achieved"], np.round(np.mean(per, axis=0), 4))
    assert front["per_prompt"]["n_prompts"] == 3 and front["samples_per_prompt"] == 2
    with pytest.raises(ValueError, match="samples differ"):  # not mixed with one reply a prompt
        evaluate_front(eval_cfg(setup, tmp_path / "k", max_prompts=3))
    with pytest.raises(ValueError, match="samples must be >= 1"):
        evaluate_front(eval_cfg(setup, tmp_path / "z", samples=0))


def test_a_system_turn_reaches_every_reply_and_the_rewards_never_see_it(tmp_path, setup):
    seen = []

    class Spy(SteerableModel):
        def complete(self, inputs, *a, **kw):
            seen.extend(inputs)
            return super().complete(inputs, *a, **kw)

        def score(self, prompts, responses):
            assert not any("Stay on topic." in p for p in prompts)
            return super().score(prompts, responses)

    steer = Spy.load(str(setup["adapter"]), dtype="float32", backend="transformers")
    evaluate_front(eval_cfg(setup, tmp_path / "sys", system="Stay on topic.", points=2), steer)
    assert len(seen) == 8 and all("Stay on topic." in x for x in seen)
    # The instruction is part of the sweep: a resume without it is refused, not mixed.
    with pytest.raises(ValueError, match="system"):
        evaluate_front(eval_cfg(setup, tmp_path / "sys", points=2), steer)


def test_prompt_files_joined_by_commas_are_read_in_turn(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt").write_text("# note\nthree\n")
    assert read_prompts(f"{tmp_path / 'a.txt'},{tmp_path / 'b.txt'}") == ["one", "two", "three"]
    with pytest.raises(FileNotFoundError, match="c.txt"):
        read_prompts(f"{tmp_path / 'a.txt'},{tmp_path / 'c.txt'}")


def test_prompt_slices_and_calibration(tmp_path, setup):
    cfg = eval_cfg(setup, tmp_path / "s", base=True, skip_prompts=1, max_prompts=3)
    evaluate_front(cfg)
    used = {r["prompt"] for r in read_jsonl(tmp_path / "s" / "samples.jsonl")}
    assert used == set(read_prompts(setup["prompts"])[1:4])
    with pytest.raises(ValueError, match="no prompts left"):
        evaluate_front(eval_cfg(setup, tmp_path / "x", base=True, skip_prompts=10**6))

    cands = [[0.1, 0.9], [[0.2, 0.9], [0.5, 0.95]]]
    base = {k: v for k, v in eval_cfg(setup, tmp_path / "cal").__dict__.items()}
    cal = calibrate_range(CalibrateConfig(**{**base, "candidates": cands}))
    fronts = [
        json.loads((tmp_path / "cal" / f"range{k}" / "front.json").read_text()) for k in (0, 1)
    ]
    assert [c["range_quantiles"] for c in cal["candidates"]] == cands
    # One base-model point on the same calibration prompts sets the relative guard floors.
    base_front = json.loads((tmp_path / "cal" / "base" / "front.json").read_text())
    assert base_front["points"][0]["weights"] is None
    assert cal["base_guards"] == base_front["points"][0]["guards"]
    assert cal["chosen"] == fronts[pick_range(fronts, cal["base_guards"])]["mapping"]
    assert all(isinstance(c["guard_failures"], dict) for c in cal["candidates"])
    stats = RewardStats.from_dict(RicMeta.load(setup["adapter"]).stats)
    assert np.allclose(fronts[1]["mapping"]["low"], stats.quantile([0.2, 0.5]))
    bad = {**base, "candidates": [[0.1, 0.9], [0.9, 0.1]], "out": str(tmp_path / "bad")}
    with pytest.raises(ValueError, match="range_quantiles"):
        calibrate_range(CalibrateConfig(**bad))
    assert not (tmp_path / "bad").exists()  # refused before any sweep


def test_tag_contrast(tmp_path, setup):
    cfg = eval_cfg(setup, tmp_path / "tc", tag_contrast=str(setup["data"]))
    tc = evaluate_tag_contrast(cfg)
    saved = json.loads((tmp_path / "tc" / "tag_contrast.json").read_text())
    assert saved["n_pairs"] == tc["n_pairs"] > 0 and np.isfinite(saved["mean_nll_increase"])
    # Each prompt's farthest pair too: as many pairs (one per prompt), its own figure.
    far = saved["farthest"]
    assert far["n_pairs"] == tc["n_pairs"] and np.isfinite(far["mean_nll_increase"])
    for part in ("first_tokens", "end_token"):  # where in the answer the tags act
        assert np.isfinite(far[part]["mean_nll_increase"]) and np.isfinite(tc[part]["sem"])


def test_pick_range_puts_guards_first_then_the_worst_objective_then_hypervolume():
    good = {
        "top_opening_share": 0.05,
        "shared_opening_share": 0.0,
        "echo_rate": 0.0,
        "relevance": 0.57,
        "distinct_2": 0.8,
    }
    base = {"relevance": 0.57, "distinct_2": 0.76}

    def front(sp, hv, relevance=(0.57, 0.57)):
        points = [
            {"weights": [w, 1 - w], "guards": {**good, "relevance": r}}
            for w, r in zip((0.0, 1.0), relevance, strict=True)
        ]
        return {"controllability": {"spearman": sp}, "hypervolume": hv, "points": points}

    fronts = [front([1.0, 0.5], 9.0), front([0.9, 0.8], 5.0), front([0.8, 0.9], 6.0)]
    assert pick_range(fronts, base) == 2  # 0.8 worst in both: the larger front wins
    assert pick_range(fronts[:2], base) == 1  # a flat objective loses whatever the hypervolume
    # Off topic at the extreme (relevance 0.50 < 0.57 - 0.05): loses to a narrower range.
    wide = front([0.95, 0.95], 9.0, relevance=(0.57, 0.50))
    assert pick_range([wide, fronts[2]], base) == 1
    assert pick_range([wide, fronts[2]]) == 0  # no base point: relevance is not judged
    assert point_failures(wide, base) == {"[1.0, 0.0]": ["relevance 0.500 < 0.520"]}
    # Shipping: fewer points below the bars first, then the larger front.
    ok6, ok5 = front([0.92, 0.95], 6.0), front([0.95, 0.92], 5.0)
    assert pick_model({"online": wide, "offline": ok6}, base) == "offline"
    assert pick_model({"online": ok6, "offline": ok5}, base) == "online"
    # A larger front whose one slider is out of order (Spearman 0.87 < 0.9) loses to a smaller
    # one that meets every bar, as the per-prompt floor's iteration did on the held-out prompts.
    unsteady = front([0.87, 0.99], 9.0)
    steady = front([0.97, 0.99], 5.0)
    assert pick_model({"per_prompt": unsteady, "second": steady}, base) == "second"
    assert pick_model({"per_prompt": front([0.9, 0.99], 9.0), "second": steady}, base) == (
        "per_prompt"
    )


def test_resumed_sweep_with_other_settings_is_refused(tmp_path):
    check_resume(tmp_path, {"seed": 0, "stats": {"mean": [0.1]}})
    (tmp_path / "samples.jsonl").write_text('{"weights": null}\n')
    check_resume(tmp_path, {"seed": 0, "stats": {"mean": [0.1]}})  # same sweep: resumes
    with pytest.raises(ValueError, match="stats differ"):
        check_resume(tmp_path, {"seed": 0, "stats": {"mean": [0.2]}})
    (tmp_path / "sweep.json").unlink()
    with pytest.raises(ValueError, match="unknown sweep"):
        check_resume(tmp_path, {"seed": 0})


def test_a_front_without_guards_is_refused(tmp_path):
    from ric.evaluation import write_front

    class Steer:
        reward_names = ["a", "b"]
        stats = RewardStats.fit(np.random.default_rng(0).normal(size=(50, 2)), ["a", "b"])
        meta = RicMeta("m", ["a", "b"], stats.to_dict(), {})

    rows = [{"weights": [1, 0], "desired": [1, 1], "achieved": [0.1, 0.2]}]  # no responses
    cfg = EvalConfig(adapter=None, out=str(tmp_path), points=None)
    with pytest.raises(ValueError, match="quality guards"):
        write_front(cfg, Steer(), [[1, 0]], rows, 1.0, 1.0)
    assert not (Path(tmp_path) / "front.json").exists()
