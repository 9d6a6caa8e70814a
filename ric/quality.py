"""Quality guards for a set of replies: does the model answer, in its own varied words?

A steerable model can reach good reward numbers by printing stock phrases (one opening for
every prompt), by echoing the prompt, or by stopping mid-sentence. Every evaluation reports,
for each sweep point and the base point (`guard_metrics`):

- relevance: mean `relevance` reward (MiniLM cosine of prompt and reply);
- top_opening_share: share of replies that start with the most common 3-word opening;
- shared_opening_share: share of replies whose first 5 words also open replies to >= 3 other
  prompts;
- echo_rate: share of replies made mostly (> 50% of their word 5-grams) of the prompt's own
  5-grams;
- finished_share: share of replies ended by end-of-text (not by the token cap);
- distinct_2: distinct word bigrams / all word bigrams over the replies.

`guard_failures` holds a point to the bars (GUARD_BARS): fixed ceilings on stock openings and
echo, and floors on relevance and distinct-2 relative to the base model on the same prompts.
The distinct-2 floor is the project's own: a model asked for extreme scores can loop a word or
flood emoji while staying on topic, which relevance alone does not see.

>>> opening("What a WONDERFUL question! Here", 3)
'what a wonderful'
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np

GUARDS = (
    "relevance",
    "top_opening_share",
    "shared_opening_share",
    "echo_rate",
    "finished_share",
    "distinct_2",
)
_WORD = re.compile(r"[\w']+")
# (guard, kind, bar): "max" = at most bar; "base" = at least the base model's value minus bar.
GUARD_BARS = (
    ("top_opening_share", "max", 0.20),
    ("shared_opening_share", "max", 0.15),
    ("echo_rate", "max", 0.05),
    ("relevance", "base", 0.05),
    ("distinct_2", "base", 0.10),
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def opening(text: str, n: int) -> str:
    """The first n words of a reply, lowercased, punctuation dropped."""
    return " ".join(words(text)[:n])


def top_opening(replies: list[str], n: int = 3) -> tuple[str, float]:
    """The most common n-word opening and the share of replies that start with it."""
    counts = Counter(opening(r, n) for r in replies if words(r))
    if not counts:
        return "", 0.0
    phrase, k = counts.most_common(1)[0]
    return phrase, k / len(replies)


def shared_opening_share(
    prompts: list[str], replies: list[str], n: int = 5, others: int = 3
) -> float:
    """Share of replies whose first n words also open replies to >= `others` other prompts."""
    by_opening: dict[str, set[str]] = defaultdict(set)
    for p, r in zip(prompts, replies, strict=True):
        if words(r):
            by_opening[opening(r, n)].add(p)
    shared = [
        bool(words(r)) and len(by_opening[opening(r, n)] - {p}) >= others
        for p, r in zip(prompts, replies, strict=True)
    ]
    return float(np.mean(shared)) if shared else 0.0


def _ngrams(tokens: list[str], n: int) -> list[tuple]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def is_echo(prompt: str, reply: str, n: int = 5, share: float = 0.5) -> bool:
    """True when more than `share` of the reply's word n-grams occur in the prompt."""
    grams = _ngrams(words(reply), n)
    if not grams:
        return False
    own = set(_ngrams(words(prompt), n))
    return sum(g in own for g in grams) / len(grams) > share


def distinct_n(replies: list[str], n: int = 2) -> float:
    grams = [g for r in replies for g in _ngrams(words(r), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def guard_metrics(
    prompts: list[str], replies: list[str], finished: list[bool | None] | None = None
) -> dict:
    """Every guard of one sweep point (see the module docstring)."""
    from ric.rewards import get_reward_fn

    if len(prompts) != len(replies) or not replies:
        raise ValueError("guard_metrics needs one reply per prompt, at least one")
    phrase, top = top_opening(replies, 3)
    known = [f for f in (finished or []) if f is not None]
    return {
        "relevance": round(float(np.mean(get_reward_fn("relevance")(prompts, replies))), 4),
        "top_opening_share": round(top, 4),
        "top_opening": phrase,
        "shared_opening_share": round(shared_opening_share(prompts, replies), 4),
        "echo_rate": round(
            float(np.mean([is_echo(p, r) for p, r in zip(prompts, replies, strict=True)])), 4
        ),
        "finished_share": round(float(np.mean(known)), 4) if known else None,
        "distinct_2": round(distinct_n(replies, 2), 4),
    }


def guard_failures(guards: dict, base: dict | None = None) -> list[str]:
    """The bars of GUARD_BARS one sweep point misses, readable ("relevance 0.503 < 0.523");
    [] when it meets them all. Without the base point's guards only the fixed ceilings apply."""
    failed = []
    for name, kind, bar in GUARD_BARS:
        value = guards[name]
        if kind == "max" and value > bar:
            failed.append(f"{name} {value:.3f} > {bar:.2f}")
        elif kind == "base" and base is not None and value < base[name] - bar - 1e-9:
            failed.append(f"{name} {value:.3f} < {base[name] - bar:.3f}")
    return failed
