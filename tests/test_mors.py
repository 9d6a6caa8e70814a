"""Online MORS on a tiny in-code model, and the cost lineage of a multi-stage adapter."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from training_helpers import PROMPTS, REWARDS, ending_model, prepare_cfg, sft_recipe

from ric.artifacts import read_jsonl
from ric.data import prepare_dataset
from ric.mors import (
    OnlineRecipe,
    draw_prompts,
    frontier_targets,
    keep_mask,
    mors_iteration,
    run_online,
)
from ric.normalization import RewardStats
from ric.runlog import adapter_lineage, lineage_cpu_seconds
from ric.sft import train_sft


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("mors")
    model = ending_model(tiny_model_dir, root / "lm")
    prompts = root / "prompts.txt"
    prompts.write_text(PROMPTS)
    # "a_share" is scored but not conditioned on: the kind of reward a MORS floor guards.
    cfg = prepare_cfg(
        root / "data", model, prompts, samples_per_prompt=3, rewards=[*REWARDS, "a_share"]
    )
    data = prepare_dataset(cfg)
    adapter = train_sft(sft_recipe(root / "sft", model, data, learning_rate=1e-3))
    return {"model": model, "prompts": prompts, "data": data, "adapter": adapter}


def online_recipe(setup, out, **kw):
    fields = dict(
        data_dir=str(setup["data"]),
        adapter=str(setup["adapter"]),
        out_dir=str(out),
        n_prompts=8,
        max_new_tokens=16,
        batch_size=4,
        chunk=4,
        prompts=str(setup["prompts"]),
        dtype="float32",
        backend="transformers",
        sft={"max_steps": 2, "learning_rate": 1e-3, "batch_size": 4},
    )
    return OnlineRecipe(**{**fields, **kw})


def test_mors_iteration_trains_on_finished_answers_and_logs_its_cost(tmp_path, setup):
    adapter = setup["adapter"]
    new_adapter, kept = mors_iteration(online_recipe(setup, tmp_path / "on"), str(adapter), 1, [])
    it = tmp_path / "on" / "iter_1"
    mors = json.loads((it / "mors.json").read_text())
    samples = read_jsonl(it / "samples.jsonl")
    assert mors["generated"] == 8 == len(samples) and mors["mixed"] >= mors["kept"]
    assert mors["trainable"] <= mors["finished"] == sum(r["finished"] for r in samples)
    assert mors["trainable"] > 0 and all(r["finished"] for r in kept)
    assert mors["cpu_seconds"] > 0
    before = load_file(Path(adapter) / "adapter_model.safetensors")
    after = load_file(Path(new_adapter) / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not np.allclose(before[k].numpy(), after[k].numpy()) for k in before)
    # The MORS adapter's lineage: the offline stage, then the iteration, each with its data.
    chain = adapter_lineage(new_adapter)
    assert [c["out_dir"] for c in chain] == [str(Path(adapter).parent), str(it / "sft")]
    parts = lineage_cpu_seconds(new_adapter)
    assert list(parts) == [
        f"data {setup['data']}",
        f"SFT {Path(adapter).parent}",
        f"MORS {it}",
        f"SFT {it / 'sft'}",
    ]
    assert all(v > 0 for v in parts.values())


def test_run_online_resumes_to_the_same_samples(tmp_path, setup, monkeypatch):
    from ric.steering import SteerableModel

    whole = run_online(online_recipe(setup, tmp_path / "whole"))
    real, calls = SteerableModel.complete, []

    def dying(self, inputs, *a, **k):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        return real(self, inputs, *a, **k)

    monkeypatch.setattr(SteerableModel, "complete", dying)
    with pytest.raises(KeyboardInterrupt):
        run_online(online_recipe(setup, tmp_path / "killed"))
    monkeypatch.setattr(SteerableModel, "complete", real)
    again = run_online(online_recipe(setup, tmp_path / "killed"))
    a = read_jsonl(tmp_path / "whole/iter_1/samples.jsonl")
    assert read_jsonl(tmp_path / "killed/iter_1/samples.jsonl") == a
    wa, wb = (
        load_file(whole / "adapter_model.safetensors"),
        load_file(again / "adapter_model.safetensors"),
    )
    assert all(np.allclose(wa[k].numpy(), wb[k].numpy()) for k in wa)


def test_frontier_targets_and_filter():
    rng = np.random.default_rng(0)
    t = frontier_targets([-1, -2, -3], [1, 2, 3], 500, rng)
    at_high = np.isclose(t, [1, 2, 3])
    assert np.all(at_high.sum(axis=1) >= 2)  # all but one dimension on the upper boundary
    stats = RewardStats.fit(rng.normal(size=(1000, 2)), ["a", "b"])
    q = stats.quantile(0.7)
    z = np.array([[q[0] + 0.1, -5], [-5, q[1] + 0.1], [q[0] - 0.1, q[1] - 0.1]])
    assert keep_mask(z, stats).tolist() == [True, True, False]


def test_draw_prompts_by_share(tmp_path):
    big, small = tmp_path / "big.txt", tmp_path / "small.txt"
    big.write_text("".join(f"big {i}\n" for i in range(300)))
    small.write_text("small a\nsmall b\n")
    drawn = draw_prompts({str(big): 1, str(small): 3}, 2000, np.random.default_rng(0))
    share = np.mean([p.startswith("small") for p in drawn])
    assert 0.72 < share < 0.78  # 3 of 4 draws, though the file holds 2 of 302 prompts
    assert set(p for p in drawn if p.startswith("small")) == {"small a", "small b"}
    one = draw_prompts(str(big), 50, np.random.default_rng(1))
    assert one == [f"big {i}" for i in np.random.default_rng(1).integers(0, 300, 50)]
    with pytest.raises(ValueError, match="share > 0"):
        draw_prompts({str(big): 1, str(small): 0}, 5, np.random.default_rng(0))


def test_mors_targets_stay_inside_the_quantiles_and_loops_are_dropped(tmp_path, setup):
    from ric.artifacts import RicMeta

    # min_distinct_2 above 1 drops every answer: none is trained on, the offline rows still are.
    recipe = online_recipe(
        setup, tmp_path / "q", target_quantiles=[0.25, 0.75], min_distinct_2=1.01
    )
    mors_iteration(recipe, str(setup["adapter"]), 1, [])
    it = tmp_path / "q" / "iter_1"
    stats = RewardStats.from_dict(RicMeta.load(setup["adapter"]).stats)
    desired = np.array([r["desired"] for r in read_jsonl(it / "samples.jsonl")])
    assert np.all(desired >= stats.quantile(0.25) - 1e-9)
    assert np.all(desired <= stats.quantile(0.75) + 1e-9)
    assert np.isclose(desired, stats.quantile(0.75)).any()  # still on the upper boundary
    mors = json.loads((it / "mors.json").read_text())
    assert mors["looped"] == mors["trainable"] > 0 and mors["kept"] == 0
    assert mors["mixed"] == mors["offline_kept"] > 0


def test_mors_continues_an_adapter_with_reward_vectors(tmp_path, setup):
    """The rebuild's MORS starts from a reward-vector adapter: the continued SFT must load its
    vectors, train them further and save them with the LoRA."""
    from ric.conditioning import ConditioningFormat
    from ric.vectors import ATTR

    fmt = ConditioningFormat(vectors=True).to_dict()
    start = train_sft(sft_recipe(tmp_path / "sft", setup["model"], setup["data"], conditioning=fmt))
    new_adapter, _ = mors_iteration(online_recipe(setup, tmp_path / "on"), str(start), 1, [])
    before = load_file(Path(start) / "adapter_model.safetensors")
    after = load_file(Path(new_adapter) / "adapter_model.safetensors")
    (key,) = [k for k in before if ATTR in k]
    assert key in after and not np.allclose(before[key].numpy(), after[key].numpy())


def test_a_floor_drops_low_scoring_answers_online_and_offline(tmp_path, setup):
    """A floor on a reward the adapter is not conditioned on (as the default's relevance floor):
    no answer below it is kept or mixed in, offline rows are floored alike, and the conditioned
    rewards alone reach the continued SFT."""
    from ric.data import load_dataset_rows

    recipe = online_recipe(
        setup, tmp_path / "f", keep_quantile=0.0, floor_quantiles={"a_share": 0.5}
    )
    _, kept = mors_iteration(recipe, str(setup["adapter"]), 1, [])
    it = tmp_path / "f" / "iter_1"
    mors = json.loads((it / "mors.json").read_text())
    offline = load_dataset_rows(setup["data"], ["a_share"])
    floor = mors["floors"]["a_share"]
    assert floor == pytest.approx(np.quantile([r["raw"][0] for r in offline], 0.5))
    scores = {r["key"]: r["raw"] for r in read_jsonl(it / "scores.jsonl")}
    assert all("a_share" in s for s in scores.values())
    below = sum(s["a_share"] < floor for s in scores.values())
    assert 0 < mors["below_floor"] == below
    # keep_quantile 0 keeps every answer above the floor: the floor alone decides here
    assert mors["kept"] == len(kept) == len(scores) - below > 0
    assert all(scores[r["key"]]["a_share"] >= floor and len(r["raw"]) == 2 for r in kept)
    assert mors["offline_below_floor"] == sum(r["raw"][0] < floor for r in offline) > 0
    assert mors["offline_kept"] == len(offline) - mors["offline_below_floor"]


def test_a_per_prompt_floor_holds_each_answer_to_its_own_prompts_offline_answers(tmp_path, setup):
    """floor_per_prompt: the prompts are the offline data's, and an answer, online or offline,
    is kept only if it reaches the median of ITS prompt's offline answers."""
    from ric.data import load_dataset_rows

    recipe = online_recipe(
        setup,
        tmp_path / "pp",
        keep_quantile=0.0,
        prompts="data",
        floor_per_prompt=True,
        floor_quantiles={"a_share": 0.5},
    )
    _, kept = mors_iteration(recipe, str(setup["adapter"]), 1, [])
    it = tmp_path / "pp" / "iter_1"
    mors = json.loads((it / "mors.json").read_text())
    offline = load_dataset_rows(setup["data"], ["a_share"])
    by_prompt = {}
    for r in offline:
        by_prompt.setdefault(r["prompt"], []).append(r["raw"][0])
    floors = mors["floors"]["a_share"]
    assert floors == pytest.approx({p: float(np.median(v)) for p, v in by_prompt.items()})
    assert len(set(floors.values())) > 1  # the prompts differ, so do their floors
    samples = read_jsonl(it / "samples.jsonl")
    assert {r["prompt"] for r in samples} <= set(by_prompt)
    scores = {r["key"]: r["raw"]["a_share"] for r in read_jsonl(it / "scores.jsonl")}
    prompt_of = {r["key"]: r["prompt"] for r in samples}
    below = sum(v < floors[prompt_of[k]] for k, v in scores.items())
    assert mors["below_floor"] == below and mors["kept"] == len(kept) == len(scores) - below
    assert all(scores[r["key"]] >= floors[r["prompt"]] for r in kept)
    offline_below = sum(r["raw"][0] < floors[r["prompt"]] for r in offline)
    assert mors["offline_below_floor"] == offline_below > 0


def test_a_per_prompt_floor_needs_the_data_prompts(tmp_path, setup):
    recipe = online_recipe(
        setup, tmp_path / "ppx", floor_per_prompt=True, floor_quantiles={"a_share": 0.5}
    )
    with pytest.raises(ValueError, match="floor_per_prompt needs prompts: data"):
        mors_iteration(recipe, str(setup["adapter"]), 1, [])


@pytest.mark.parametrize(
    ("floors", "message"),
    [
        ({"a_share": 1.5}, r"a_share's quantile 1.5 is not in \[0, 1\]"),
        ({"nope": 0.2}, "not scored"),
    ],
)
def test_a_bad_floor_fails_before_any_sampling(tmp_path, setup, floors, message):
    recipe = online_recipe(setup, tmp_path / "bad", floor_quantiles=floors)
    with pytest.raises(ValueError, match=message):
        mors_iteration(recipe, str(setup["adapter"]), 1, [])
    assert not (tmp_path / "bad" / "iter_1" / "samples.jsonl").exists()
