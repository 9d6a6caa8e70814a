"""Quality guards against hand-computed values."""

import numpy as np

from ric.quality import (
    GUARDS,
    distinct_n,
    guard_failures,
    guard_metrics,
    is_echo,
    shared_opening_share,
    top_opening,
)


def test_top_and_shared_openings():
    replies = [
        "What a wonderful question! Rest well.",
        "What a wonderful question! Call her.",
        "What a wonderful question! Try again.",
        "What a wonderful question! Sleep.",
        "No. Ask again later.",
    ]
    prompts = [f"p{i}" for i in range(5)]
    assert top_opening(replies, 3) == ("what a wonderful", 0.8)
    # "what a wonderful question rest" etc. differ at word 5: nothing shared
    assert shared_opening_share(prompts, replies) == 0.0
    same = ["I am so sorry to hear that."] * 4 + ["Fine."]
    assert shared_opening_share(prompts, same) == 0.8  # each of 4 shares with 3 others
    assert shared_opening_share(["p0"] * 4 + ["p4"], same) == 0.0  # one prompt, repeated


def test_echo_and_distinct():
    prompt = "How do I bake a loaf of sourdough bread at home?"
    assert is_echo(prompt, "How do I bake a loaf of sourdough bread at home? Easy.")
    assert not is_echo(prompt, "Feed the starter, mix, fold, proof overnight and bake it hot.")
    assert not is_echo(prompt, "Bake it.")  # under 5 words: no 5-grams
    # bigrams: (a b) (b a) (a b) | (a b) -> 2 distinct of 4
    assert distinct_n(["a b a b", "a b"], 2) == 0.5


def test_guard_metrics_has_every_guard():
    g = guard_metrics(["hi there", "bye now"], ["Hello to you too.", "Goodbye!"], [True, False])
    assert set(GUARDS) <= set(g)
    assert g["finished_share"] == 0.5 and g["echo_rate"] == 0.0
    assert np.isfinite(g["relevance"]) and g["top_opening_share"] == 0.5
    assert guard_metrics(["a"], ["b"])["finished_share"] is None


def test_guard_failures_against_fixed_bars_and_the_base():
    ok = {
        "top_opening_share": 0.2,
        "shared_opening_share": 0.15,
        "echo_rate": 0.05,
        "relevance": 0.523,
        "distinct_2": 0.66,
    }
    base = {"relevance": 0.573, "distinct_2": 0.76}
    assert guard_failures(ok, base) == []  # every bar met exactly
    bad = {**ok, "top_opening_share": 0.21, "relevance": 0.503, "distinct_2": 0.58}
    failed = guard_failures(bad, base)
    assert failed == [
        "top_opening_share 0.210 > 0.20",
        "relevance 0.503 < 0.523",
        "distinct_2 0.580 < 0.660",
    ]
    # Without a base point only the fixed ceilings can be judged.
    assert guard_failures(bad) == ["top_opening_share 0.210 > 0.20"]
