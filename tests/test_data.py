"""Offline data on a tiny in-code model: the model's own answers, resumable and reproducible."""

import json
from pathlib import Path

import numpy as np
import pytest
from training_helpers import INSTRUCTIONS, PROMPTS, REWARDS, ending_model, prepare_cfg

from ric.artifacts import read_jsonl
from ric.data import (
    PrepareConfig,
    prepare_dataset,
    read_instructions,
    sampling_bias,
    sampling_jobs,
    sampling_meta,
    trainable,
)
from ric.normalization import RewardStats
from ric.steering import SteerableModel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model_dir):
    return ending_model(tiny_model_dir, tmp_path_factory.mktemp("ending_lm"))


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text(PROMPTS)
    return path


@pytest.fixture(scope="module")
def instructions_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("instr") / "instructions.txt"
    path.write_text(INSTRUCTIONS)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, model_dir, prompts_file):
    out = tmp_path_factory.mktemp("data")
    prepare_dataset(prepare_cfg(out, model_dir, prompts_file, max_new_tokens=5))
    return out


def test_prepare_writes_dataset_stats_and_lengths(data_dir):
    samples = read_jsonl(data_dir / "samples.jsonl")
    rows = read_jsonl(data_dir / "dataset.jsonl")
    assert len(samples) == 12 and all({"n_tokens", "finished"} <= set(r) for r in samples)
    assert [r["key"] for r in rows] == [r["key"] for r in samples if trainable(r)]
    stats = RewardStats.load(data_dir)
    assert stats.names == REWARDS and stats.n_samples == len(rows)
    meta = json.loads((data_dir / "data.json").read_text())
    share = np.mean([r["finished"] for r in samples])
    assert meta["lengths"]["share_finished"] == round(share, 4) and 0 < share < 1
    assert meta["cpu_seconds"] > 0 and meta["attempts"] == 1
    assert 0 <= meta["guards"]["top_opening_share"] <= 1


def _recording(monkeypatch) -> list:
    """Wrap SteerableModel.complete: returns the list of (inputs, completions) of every call."""
    calls, real = [], SteerableModel.complete

    def complete(self, inputs, *a, **k):
        out = real(self, inputs, *a, **k)
        calls.append((list(inputs), out))
        return out

    monkeypatch.setattr(SteerableModel, "complete", complete)
    return calls


def test_training_responses_are_exactly_the_generated_text(
    tmp_path, model_dir, prompts_file, instructions_file, monkeypatch
):
    """Issue 14 item 5: no project text in a response, no cut, no strip: a stored response is
    the decoded completion, with its token count and end-of-text flag."""
    calls = _recording(monkeypatch)
    cfg = prepare_cfg(tmp_path, model_dir, prompts_file, instructions_file)
    prepare_dataset(cfg)
    made = [c for _, outs in calls for c in outs]
    samples = read_jsonl(tmp_path / "samples.jsonl")
    assert len(made) == len(samples) == 12
    by_text = {}
    for c in made:
        by_text.setdefault(c.text, []).append(c)
    for r in samples:
        c = by_text[r["response"]].pop()
        assert (r["n_tokens"], r["finished"]) == (c.n_tokens, c.finished)
    for r in read_jsonl(tmp_path / "dataset.jsonl"):
        assert r["finished"] and r["response"] in {c.text for c in made}


def test_hidden_instructions_reach_sampling_never_training(
    tmp_path, model_dir, prompts_file, instructions_file, monkeypatch
):
    from ric.conditioning import ConditioningFormat
    from ric.sft import build_sft_examples

    calls = _recording(monkeypatch)
    cfg = prepare_cfg(tmp_path, model_dir, prompts_file, instructions_file)
    prepare_dataset(cfg)
    inputs = [x for ins, _ in calls for x in ins]
    assert read_instructions(instructions_file) == ["", "Be brief.", "Be cheerful."]
    used = {j["instruction"] for j in sampling_jobs(cfg)}
    assert "Be brief." in used and any("Be brief." in x for x in inputs)
    rows = read_jsonl(tmp_path / "dataset.jsonl")
    stats = RewardStats.load(tmp_path)
    steer = SteerableModel.load(
        meta=sampling_meta(str(model_dir), REWARDS),
        model=str(model_dir),
        backend="transformers",
    )
    for ex in build_sft_examples(rows, stats, ConditioningFormat(), steer.tokenizer):
        assert "Be brief." not in ex["prompt"] and "Be cheerful." not in ex["prompt"]


def test_killed_prepare_resumes_to_the_same_rows(
    tmp_path, model_dir, prompts_file, instructions_file, monkeypatch
):
    """Same recipe and seed -> same dataset, whether or not a run was killed on the way."""
    whole = tmp_path / "whole"
    prepare_dataset(prepare_cfg(whole, model_dir, prompts_file, instructions_file))
    real, calls = SteerableModel.complete, []

    def dying(self, inputs, *a, **k):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(len(inputs))
        return real(self, inputs, *a, **k)

    monkeypatch.setattr(SteerableModel, "complete", dying)
    cfg = prepare_cfg(tmp_path / "killed", model_dir, prompts_file, instructions_file)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(cfg)
    before = read_jsonl(tmp_path / "killed" / "samples.jsonl")
    assert 0 < len(before) < 12
    with open(tmp_path / "killed" / "samples.jsonl", "a") as f:
        f.write('{"key": "torn')  # and a torn tail on top
    calls.clear()
    monkeypatch.setattr(
        SteerableModel,
        "complete",
        lambda s, i, *a, **k: calls.append(len(i)) or real(s, i, *a, **k),
    )
    prepare_dataset(cfg)
    assert sum(calls) == 12 - len(before)  # only the rest generated
    for name in ("samples.jsonl", "dataset.jsonl"):
        assert read_jsonl(tmp_path / "killed" / name) == read_jsonl(whole / name)
    data = json.loads((tmp_path / "killed" / "data.json").read_text())
    assert data["attempts"] == 2  # the killed attempt's time is counted too
    calls.clear()
    prepare_dataset(cfg)  # nothing left to do
    assert calls == [] and len(read_jsonl(tmp_path / "killed" / "scores.jsonl")) == len(
        read_jsonl(whole / "scores.jsonl")
    )


def test_preference_dataset_input(tmp_path):
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


def test_prompt_builder_regenerates_the_shipped_files_byte_for_byte(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_prompts", ROOT / "train/make_prompts.py")
    mp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mp)
    monkeypatch.setattr(mp, "OUT_DIR", tmp_path)
    mp.main([])
    for name in ("train.txt", "eval.txt", "README.md"):
        assert (tmp_path / name).read_bytes() == (ROOT / "assets/prompts" / name).read_bytes()


def test_overlap_finds_near_twins_and_the_final_set_has_none(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_prompts", ROOT / "train/make_prompts.py")
    mp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mp)
    # The newest final set, written before any model ran on it: no near-twin anywhere.
    assert mp.overlap(ROOT / "assets/prompts/unseen80.txt", above=0.38) == []
    monkeypatch.setattr(mp, "OUT_DIR", tmp_path)
    (tmp_path / "train.txt").write_text("Why is the sky blue?\nHow do I bake bread?\n")
    (tmp_path / "instructions.txt").write_text("why is the sky blue\n")  # never compared
    (tmp_path / "new.txt").write_text("why is the sky so blue\nName a red fruit.\n")
    found = mp.overlap(tmp_path / "new.txt")
    assert found[0] == (0.833, "why is the sky so blue", "train.txt", "Why is the sky blue?")
    assert len(found) == 1  # the fruit shares no word with any prompt


def test_shipped_instructions_are_the_documented_ones():
    hidden = read_instructions(ROOT / "assets/prompts/instructions.txt")
    assert "" in hidden and len(hidden) >= 3
    doc = (ROOT / "docs/TRAINING.md").read_text()
    assert all(h in doc for h in hidden if h)


def test_reward_measures_and_the_chosen_pair():
    from ric.data import choose_pair, reward_measures

    # Two prompts, four answers each. "a" and "b" move together within a prompt, "c" against
    # them; "d" only follows the prompt (constant within each), so the model cannot move it.
    rows = []
    for p, base in (("p1", 0.0), ("p2", 1.0)):
        for k in range(4):
            rows.append({"prompt": p, "raw": [base + k, base + 2 * k, -k, base]})
    m = reward_measures(rows, ["a", "b", "c", "d"])
    assert m["n_answers"] == 8 and m["n_prompts"] == 2
    assert m["within_prompt"][3] == 0.0 and m["within_prompt"][2] == 1.0
    rho = np.array(m["spearman_within_prompt"])
    assert rho[0, 1] == 1.0 and rho[0, 2] == -1.0
    assert choose_pair(m) == ("a", "c")  # d is excluded, a-c and b-c tie at -1: first wins
    assert choose_pair(m, min_range=2.7) == ("b", "c")  # a's 10-90% range is 2.6
    with pytest.raises(ValueError, match="spread and vary within prompts"):
        choose_pair(reward_measures(rows, ["a", "b", "c", "d"]), min_within=1.1)
    assert m["length_spearman"] is None  # no n_tokens in these rows
    # "c" falls as the answer grows (within each prompt and over all); "d" follows the prompt.
    for r in rows:
        r["n_tokens"] = 10 + 5 * r["raw"][0]
    length = np.array(reward_measures(rows, ["a", "b", "c", "d"])["length_spearman"])
    assert length[0].tolist() == [1.0, 1.0] and length[2, 1] == -1.0


def test_stored_answers_are_what_the_model_generates_again_from_the_same_seed(
    tmp_path, model_dir, prompts_file, instructions_file
):
    """Engine-independent check of issue 14 item 5: regenerate every chunk with its seed and
    compare the decoded tokens with the stored rows, character for character."""
    from ric.conditioning import format_plain_prompt
    from ric.data import chunk_seed, sampling_groups
    from ric.generation import GenerationSettings, eos_ids
    from ric.rewards import positive_word_ids

    cfg = prepare_cfg(
        tmp_path,
        model_dir,
        prompts_file,
        instructions_file,
        word_bias=[0.0, 3.0],
        end_bias=[0.0, 0.0, 4.0],
    )
    prepare_dataset(cfg)
    stored = {r["key"]: r for r in read_jsonl(tmp_path / "samples.jsonl")}
    steer = SteerableModel.load(
        meta=sampling_meta(str(model_dir), REWARDS),
        model=str(model_dir),
        backend="transformers",
        dtype="float32",
    )
    jobs = sampling_jobs(cfg)
    for c, start in enumerate(range(0, len(jobs), cfg.chunk)):
        chunk = jobs[start : start + cfg.chunk]
        for g, (temp, word_bias, end_bias), group in sampling_groups(chunk):
            inputs = [
                format_plain_prompt(j["prompt"], steer.tokenizer, system=j["instruction"] or None)
                for j in group
            ]
            words, ends = positive_word_ids(steer.tokenizer), eos_ids(steer.tokenizer)
            bias = sampling_bias(word_bias, end_bias, words, ends)
            settings = GenerationSettings(cfg.max_new_tokens, temp, cfg.top_p, logit_bias=bias)
            outs = steer.complete(
                inputs,
                settings,
                seed=chunk_seed(cfg.seed, c, g),
                batch_size=cfg.batch_size,
                progress=False,
            )
            for j, o in zip(group, outs, strict=True):
                row = stored[j["key"]]
                assert (row["response"], row["n_tokens"], row["finished"]) == (
                    o.text,
                    o.n_tokens,
                    o.finished,
                )


def test_word_bias_reaches_sampling_and_more_samples_keep_the_old_ones(
    tmp_path, model_dir, prompts_file, monkeypatch
):
    """A hidden word bias tilts only the sampler (a logit bias on the positive words); raising
    samples_per_prompt with a bias for the new samples keeps every stored row and generates
    only the new ones."""
    from ric.rewards import positive_word_ids

    seen, real = [], SteerableModel.complete

    def complete(self, inputs, settings, *a, **k):
        seen.append((len(inputs), settings.logit_bias))
        return real(self, inputs, settings, *a, **k)

    monkeypatch.setattr(SteerableModel, "complete", complete)
    prepare_dataset(prepare_cfg(tmp_path, model_dir, prompts_file))
    before = read_jsonl(tmp_path / "samples.jsonl")
    assert all(b is None for _, b in seen) and not any("word_bias" in r for r in before)
    seen.clear()
    grown = prepare_cfg(
        tmp_path, model_dir, prompts_file, samples_per_prompt=3, word_bias=[0.0, 0.0, 2.0]
    )
    prepare_dataset(grown)
    after = read_jsonl(tmp_path / "samples.jsonl")
    assert after[: len(before)] == before
    new = after[len(before) :]
    assert len(new) == len(before) // 2 and sum(n for n, _ in seen) == len(new)
    assert all(r["key"].endswith(":2") and r["word_bias"] == 2.0 for r in new)
    word_ids = positive_word_ids(
        SteerableModel.load(
            meta=sampling_meta(str(model_dir), REWARDS),
            model=str(model_dir),
            backend="transformers",
        ).tokenizer
    )
    assert all(b == dict.fromkeys(word_ids, 2.0) for _, b in seen)
    with pytest.raises(ValueError, match="word_bias"):
        prepare_cfg(tmp_path, model_dir, prompts_file, word_bias=[])
    with pytest.raises(ValueError, match="word_bias"):
        prepare_cfg(tmp_path, model_dir, prompts_file, word_bias=["high"])
    with pytest.raises(ValueError, match="end_bias"):
        prepare_cfg(tmp_path, model_dir, prompts_file, end_bias=[float("inf")])


def test_end_bias_pushes_only_the_end_of_text_tokens(
    tmp_path, model_dir, prompts_file, monkeypatch
):
    """A hidden end-of-text bias reaches the sampler as a logit bias on the EOS ids alone (and
    beside a word bias), is stored on its rows, and the biased answers are no longer."""
    from ric.generation import eos_ids
    from ric.rewards import positive_word_ids

    seen, real = [], SteerableModel.complete

    def complete(self, inputs, settings, *a, **k):
        seen.append(settings.logit_bias)
        return real(self, inputs, settings, *a, **k)

    monkeypatch.setattr(SteerableModel, "complete", complete)
    cfg = prepare_cfg(
        tmp_path, model_dir, prompts_file, samples_per_prompt=2, word_bias=[0.0], end_bias=[0, 6]
    )
    prepare_dataset(cfg)
    tok = SteerableModel.load(
        meta=sampling_meta(str(model_dir), REWARDS), model=str(model_dir), backend="transformers"
    ).tokenizer
    ends = eos_ids(tok)
    assert None in seen and dict.fromkeys(ends, 6.0) in seen
    rows = read_jsonl(tmp_path / "samples.jsonl")
    assert {r.get("end_bias") for r in rows} == {None, 6.0}
    plain = [r["n_tokens"] for r in rows if "end_bias" not in r]
    pushed = [r["n_tokens"] for r in rows if "end_bias" in r]
    assert np.mean(pushed) <= np.mean(plain)
    both = sampling_bias(2.0, 6.0, positive_word_ids(tok), ends)
    assert {both[t] for t in ends} == {6.0} and set(both) - ends == set(positive_word_ids(tok))
