"""Build the ric prompt set from its sources: assets/prompts/train.txt, eval.txt and README.md.

    python train/make_prompts.py
    python train/make_prompts.py --overlap assets/prompts/unseen80.txt   # a new set's nearest twins

The prompts are data, kept in assets/prompts/source/ (written for this project, Apache-2.0):
- hand.txt: hand-written prompts, under "## <category>" headers;
- templates.tsv: category, cap, template (slots in braces); caps keep any one template well
  under 4% of the set;
- slots.json: the hand-written values of each slot.
The mix is chosen so the rewards pull against each other: sad news sets relevance against
positivity, requests for detailed explanations set relevance against brevity.

Deterministic (fixed seed, stdlib only). The 300 eval prompts are held out by group: a group is
one hand-written prompt, or every templated prompt that shares the same first-slot value (e.g.
all prompts about "my grandmother"), so a held-out prompt never has a near-twin in train that
differs only in a secondary slot.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import string
import tempfile
from collections import Counter
from pathlib import Path

SEED = 20240611
N_EVAL = 300
MAX_TEMPLATE_SHARE = 0.04
OUT_DIR = Path(__file__).resolve().parent.parent / "assets" / "prompts"
SOURCE = OUT_DIR / "source"

# Coarse buckets for the reported mix.
BUCKET = {
    "sad": "negative",
    "bad_review": "negative",
    "happy": "positive",
    "good_review": "positive",
    "detailed": "detailed",
}


def read_hand(path: Path) -> dict[str, list[str]]:
    """{category: [prompt, ...]} from "## category" headers and one prompt per line."""
    hand: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            hand[line[3:]] = []
        elif line:
            hand[next(reversed(hand))].append(line)
    return hand


def read_templates(path: Path) -> list[tuple[str, str, int]]:
    """[(category, template, cap)] from tab-separated lines: category, cap, template."""
    rows = [ln.split("\t") for ln in path.read_text(encoding="utf-8").splitlines() if ln]
    return [(cat, template, int(cap)) for cat, cap, template in rows]


HAND = read_hand(SOURCE / "hand.txt")
TEMPLATES = read_templates(SOURCE / "templates.tsv")
SLOTS = json.loads((SOURCE / "slots.json").read_text(encoding="utf-8"))


def slot_names(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def expand(template: str, cap: int, rng: random.Random) -> list[tuple[str, str]]:
    """Return up to `cap` (prompt, group) pairs sampled from all slot combinations."""
    names = slot_names(template)
    combos = list(itertools.product(*(SLOTS[n] for n in names)))
    picked = rng.sample(combos, min(cap, len(combos)))
    return [
        (template.format(**dict(zip(names, values, strict=True))), f"{names[0]}={values[0]}")
        for values in picked
    ]


def build(rng: random.Random) -> list[tuple[str, str, str, str]]:
    """All prompts as (text, category, source, group), deduplicated case-insensitively."""
    rows = [(t, cat, "hand", f"hand:{t}") for cat, items in HAND.items() for t in items]
    for cat, template, cap in TEMPLATES:
        rows += [(t, cat, template, g) for t, g in expand(template, cap, rng)]
    seen, unique = set(), []
    for row in rows:
        key = row[0].casefold()
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


def check(rows: list[tuple[str, str, str, str]]) -> None:
    for text, *_ in rows:
        n = len(text.split())
        assert 4 <= n <= 40, (n, text)
        assert "\n" not in text and "<" not in text and ">" not in text, text
        assert text == text.strip() and "  " not in text, text
    per_template = Counter(src for _, _, src, _ in rows if src != "hand")
    worst, count = per_template.most_common(1)[0]
    assert count <= MAX_TEMPLATE_SHARE * len(rows), (worst, count)


def split(rows: list, rng: random.Random) -> tuple[list, list]:
    """Hold out whole groups until eval has N_EVAL prompts, in about the overall bucket mix."""
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(row[3], []).append(row)
    overall = Counter(bucket(r) for r in rows)
    quota = {b: N_EVAL * n // len(rows) for b, n in overall.items()}
    quota["other"] += N_EVAL - sum(quota.values())
    keys = sorted(groups)
    rng.shuffle(keys)
    taken: Counter = Counter()
    eval_keys: set[str] = set()
    for k in keys:
        need = Counter(bucket(r) for r in groups[k])
        if all(taken[b] + n <= quota[b] for b, n in need.items()):
            eval_keys.add(k)
            taken += need
    assert sum(taken.values()) == N_EVAL, taken
    train = [r for r in rows if r[3] not in eval_keys]
    held = [r for r in rows if r[3] in eval_keys]
    rng.shuffle(train)
    rng.shuffle(held)
    assert not {r[0].casefold() for r in train} & {r[0].casefold() for r in held}
    return train, held


def bucket(row: tuple[str, str, str, str]) -> str:
    return BUCKET.get(row[1], "other")


def mix(rows: list) -> str:
    buckets = Counter(bucket(r) for r in rows)
    return ", ".join(
        f"{b} {buckets[b]} ({100 * buckets[b] / len(rows):.0f}%)"
        for b in ("negative", "positive", "detailed", "other")
    )


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as f:
        f.write(text)
        tmp = f.name
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def readme(rows: list, train: list, held: list) -> str:
    n_hand = sum(1 for r in rows if r[2] == "hand")
    return "\n".join(
        [
            "# Prompt set",
            "",
            f"- {len(rows)} single-turn English user requests, one per line: `train.txt` "
            f"({len(train)}) and `eval.txt` ({len(held)}, held out; no overlap with train).",
            f"- Mix: {mix(rows)}. Negative = sad news and bad experiences (relevance vs "
            "positivity); detailed = requests for long explanations (relevance vs brevity); other = "
            "advice, how-tos, short explanations, opinions, creative tasks, short-answer questions.",
            f"- Made by `train/make_prompts.py` (stdlib only, fixed seed) from the data in "
            f"`source/`: {n_hand} hand-written prompts (`hand.txt`) plus {len(TEMPLATES)} "
            "hand-written templates (`templates.tsv`) filled from hand-written slot lists "
            "(`slots.json`), deduplicated case-insensitively. Eval holds out whole groups (one "
            "hand-written prompt, or all template prompts sharing a first-slot value) in the same "
            "mix.",
            "- Regenerate: `python train/make_prompts.py`",
            "- `unseen30.txt`: 30 hand-written prompts in other styles, not made by the script and "
            "in neither split, for checking the evaluator on prompts never trained or evaluated on.",
            "- `unseen30b.txt`: 30 more hand-written prompts, written and committed (2026-12-02) "
            "before any model was run on them, after `unseen30.txt` had informed a decision (its "
            "relevance failures led to the relevance floor in MORS, docs/TRAINING.md). Used only "
            "for the final check of a model, never to choose one; near-duplicates of train, eval "
            "and unseen30 were replaced (word Jaccard <= 0.44).",
            "- `unseen40.txt`: 40 more hand-written prompts (casual, negative news, detailed "
            "requests, role-play, short questions), written and committed (2026-12-02) before any "
            "model was run on them, after `unseen30b.txt` had been looked at. The final check of a "
            "model, never used to choose one; near-duplicates of every set above were replaced "
            "(word Jaccard <= 0.38).",
            "- `unseen50.txt`: 50 more hand-written prompts in the same styles, written and "
            "committed (2026-12-02) before any model was run on them, after `unseen40.txt` had "
            "been looked at. The final check of a model, never used to choose one; near-duplicates "
            "of every set above were replaced (word Jaccard <= 0.38).",
            "- `unseen60.txt`: 50 more hand-written prompts in the same styles, written and "
            "committed (2026-12-02) before any model was run on them, after `unseen50.txt` had "
            "been looked at. The final check of a model, never used to choose one; near-twins of "
            "every other set here were replaced (word Jaccard <= 0.38, `python "
            "train/make_prompts.py --overlap assets/prompts/unseen60.txt`).",
            "- `unseen70.txt`: 50 more hand-written prompts in the same styles, written and "
            "committed (2026-12-03) before any model was run on them, after `unseen60.txt` had "
            "been looked at. The final check of a model, never used to choose one or its mapping "
            "range; near-twins of every other set here were replaced (word Jaccard <= 0.38, "
            "`python train/make_prompts.py --overlap assets/prompts/unseen70.txt`). The spent "
            "sets `unseen50.txt` and `unseen60.txt` now serve as hand-written CALIBRATION prompts "
            "(train/calibrate.py): a model is checked on prompts unlike the generated ones it was "
            "trained on, so its mapping range is chosen on such prompts too.",
            "- `unseen80.txt`: 50 more hand-written prompts in the same styles, written and "
            "committed (2026-12-03) before any model or mapping range was run on them, after "
            "`unseen70.txt` had been looked at. The final check of a model, never used to choose "
            "one or its mapping range; near-twins of every other set here were replaced (word "
            "Jaccard <= 0.38, `python train/make_prompts.py --overlap "
            "assets/prompts/unseen80.txt`).",
            "- `styles.txt`: 92 hand-written TRAINING prompts in the styles `train.txt` lacks "
            "(casual lowercase questions, news told without a question, role-play, short poems, "
            "short factual questions), for the fourth MORS iteration (train/recipes/"
            "cpu_online4.yaml); near-duplicates of eval and the unseen sets were replaced (word "
            "Jaccard <= 0.50, the highest pair sharing only 'what is the').",
            "- `instructions.txt`: the hidden instructions the offline data is sampled under (in "
            "the system turn of the sampling prompt only, never in a training prompt; "
            "docs/TRAINING.md).",
            "- License: written for this project, Apache-2.0.",
            "",
        ]
    )


def overlap(path: Path, above: float = 0.0) -> list[tuple[float, str, str, str]]:
    """Each prompt of a hand-written set against every prompt of the other files here, by word
    Jaccard (shared words / all words): [(score, prompt, other file, other prompt)], nearest
    pair per prompt, highest first, those above `above`. A fresh set must have no near-twin in
    any set a model was trained, chosen or checked on."""
    words = re.compile(r"[\w']+")

    def bag(text: str) -> frozenset:
        return frozenset(words.findall(text.lower()))

    others = [
        (f.name, line, bag(line))
        for f in sorted(OUT_DIR.glob("*.txt"))
        if f.resolve() != Path(path).resolve() and f.name != "instructions.txt"
        for line in f.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    found = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            a = bag(line)
            score, name, other = max((len(a & b) / len(a | b), n, o) for n, o, b in others)
            if score > above:
                found.append((round(score, 3), line, name, other))
    return sorted(found, reverse=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--overlap", help="report a hand-written set's nearest twins and stop")
    args = parser.parse_args(argv)
    if args.overlap:
        if not Path(args.overlap).is_file():
            parser.error(f"--overlap: no prompt file at {args.overlap}")
        for score, line, name, other in overlap(Path(args.overlap))[:10]:
            print(f"{score:.3f}  {line}  <->  {name}: {other}")
        return
    rng = random.Random(SEED)
    rows = build(rng)
    check(rows)
    train, held = split(rows, rng)
    write_atomic(OUT_DIR / "train.txt", "".join(r[0] + "\n" for r in train))
    write_atomic(OUT_DIR / "eval.txt", "".join(r[0] + "\n" for r in held))
    write_atomic(OUT_DIR / "README.md", readme(rows, train, held))
    cats = Counter(cat for _, cat, _, _ in rows)
    print(f"total {len(rows)}: train {len(train)}, eval {len(held)}")
    print("all:  " + mix(rows))
    print("eval: " + mix(held))
    print("categories: " + ", ".join(f"{c} {n}" for c, n in sorted(cats.items())))


if __name__ == "__main__":
    main()
