"""Write docs/TRAINING.md from the run artifacts: every figure in it comes from these files.

    python train/report.py --stages runs/sft \
        --fronts base=runs/eval_base,offline=runs/eval_sft,online=runs/eval_online

Reads each offline data set's data.json (--data, the last one described in full), each SFT
stage's train_log.json, runs/online*/iter_*/mors.json (if any) and the evaluated fronts, with
the quality guards of every point; writes docs/TRAINING.md and docs/training_front.{html,png},
and prints the guards table.

A stage whose run folder is gone (a fresh checkout keeps only what landed) is not lost: rows
of the cost table and "## " sections of the previous report (--stored, by default the output
file itself) that this run does not write are carried over, marked "(stored)".
"""

import argparse
import os
import re
import shlex
from pathlib import Path

import numpy as np

from ric.artifacts import atomic_write_text, read_json, read_jsonl
from ric.data import read_instructions
from ric.defaults import DEFAULT
from ric.distill import targets_folder
from ric.plotting import is_base_front, save_front_figures
from ric.runlog import COST_FILE, clock_total


def machine() -> str:
    from ric.runlog import machine_info

    m = machine_info()
    return (
        f"{m['cores']} cores ({m['cpu']}), OMP_NUM_THREADS={m['omp_num_threads']}, "
        f"Python {m['python']}, torch {m['torch']}, GPU: {m['gpu'] or 'none'}"
    )


def _mins(s) -> str:
    return f"{s / 60:.1f} min"


def _fmt(v, nd=2):
    return "n/a" if v is None else f"{v:.{nd}f}"


def _contrast(c: dict | None) -> str:
    if not c:
        return "n/a"
    return f"{c['mean_nll_increase']:+.2f} +- {c['sem']:.2f} ({c['n_pairs']} pairs)"


FIRST = 100  # held-out prompts every 11-point sweep uses (bench/fronts.py too)


def slice_spearman(front: dict) -> str:
    """Spearman of weight vs achieved mean over the first FIRST prompts | over the rest."""
    from ric.pareto import spearman_controllability

    w = np.array([p["weights"] for p in front["points"]])
    per = np.array(front["per_prompt"]["achieved"])  # points x prompts x rewards
    cells = []
    for part in (per[:, :FIRST], per[:, FIRST:]):
        rho = spearman_controllability(w, part.mean(axis=1))
        cells.append(", ".join(_fmt(x) for x in rho) + f" ({part.shape[1]} prompts)")
    return " | ".join(cells)


GUARD_COLUMNS = [
    ("relevance", "relevance", 3),
    ("top_opening_share", "top 3-word opening", 0),
    ("shared_opening_share", "shared 5-word openings", 0),
    ("echo_rate", "echo", 0),
    ("finished_share", "ended by EOS", 0),
    ("distinct_2", "distinct-2", 2),
]


def _floor(name: str, value) -> str:
    """A MORS floor as the report names it: one value, or per prompt (their median)."""
    if isinstance(value, dict):
        return f"{name} floor of its own prompt (median {np.median(list(value.values())):.3f})"
    return f"{name} floor {value:.3f}"


def guards_section(fronts: dict) -> list[str]:
    """Every front's quality guards, one row per sweep point (the base point included)."""
    head = " | ".join(title for _, title, _ in GUARD_COLUMNS)
    out = [
        "## Quality guards",
        "",
        "Per sweep point (ric.quality): mean relevance to the prompt, the most common 3-word "
        "opening's share, the share of replies whose first 5 words open replies to >= 3 other "
        "prompts, the echo rate (replies made mostly of the prompt's 5-grams), the share ended "
        "by end-of-text, distinct-2.",
        "",
        f"| model | weights | {head} | most common opening |",
        "|---|---|" + "---|" * (len(GUARD_COLUMNS) + 1),
    ]
    for key, f in fronts.items():
        for pt in f["points"]:
            g = pt.get("guards")
            if not g:
                continue
            cells = []
            for name, _, nd in GUARD_COLUMNS:
                v = g.get(name)
                cells.append("n/a" if v is None else (f"{v:.0%}" if nd == 0 else f"{v:.{nd}f}"))
            w = "base" if pt["weights"] is None else str([round(x, 2) for x in pt["weights"]])
            out.append(
                f"| {key} | {w} | " + " | ".join(cells) + f' | "{g.get("top_opening", "")}" |'
            )
    return [*out, ""]


def _mapping(front: dict) -> str:
    """The preference mapping a front was evaluated with (recorded, or from its settings)."""
    if is_base_front(front):
        return "none (base)"
    used, st = front.get("mapping") or {}, front.get("settings", {})
    method = used.get("method") or st.get("method")
    if method is None:  # an older front on the artifact's default: read it from the artifact
        meta = Path(st.get("adapter") or "") / "ric.json"
        method = read_json(meta).get("mapping", "ric") if meta.is_file() else "the artifact's"
    rq = used.get("range_quantiles") or st.get("range_quantiles")
    return f"{method}, range quantiles {list(rq)}" if rq else f"{method}, full data range"


def calibration_section(cal: dict) -> list[str]:
    """The candidate mapping ranges swept on calibration prompts, and the one chosen."""
    n = f"the first {cal['max_prompts']}" if cal.get("max_prompts") else "all"
    skip = f" after skipping {cal['skip_prompts']}" if cal.get("skip_prompts") else ""
    points = cal.get("points") or 11
    trained_on = cal["prompts"] == DEFAULT.train_prompts
    lines = [
        f"## Mapping range, chosen {'on training' if trained_on else 'again on hand-written'} "
        "prompts",
        "",
        f"Each candidate range (quantiles of the training rewards: one [lo, hi] for every "
        f"reward, or one pair per reward) swept with {points} weights on {n} prompts of "
        f"{cal['prompts']}{skip}; rule: {cal['rule']}. The held-out prompts were not used.",
        "",
        "| range quantiles | mapping | hypervolume | Spearman (weight vs achieved) "
        "| points failing a guard | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for c in cal["candidates"]:
        chosen = "**yes**" if c["range_quantiles"] == cal["chosen"]["range_quantiles"] else ""
        failed = c.get("guard_failures")
        failed = (
            "; ".join(f"w={w}: {', '.join(f)}" for w, f in failed.items()) or "none"
            if failed is not None
            else "-"
        )
        lines.append(
            f"| {c['range_quantiles']} | {c['method']} | {c['hypervolume']:.4f} | "
            f"{', '.join(_fmt(x) for x in c['spearman'])} | {failed} | {chosen} |"
        )
    return [*lines, ""]


def _prompts(front: dict) -> str:
    """How many prompts a front used, and which when not the first N of eval.txt."""
    st, n = front.get("settings", {}), front["per_prompt"]["n_prompts"]
    skip, name = st.get("skip_prompts") or 0, Path(st.get("prompts") or "eval.txt").name
    where = [name] if name != "eval.txt" else []
    where += [f"prompts {skip + 1}-{skip + n}"] if skip else []
    k = front.get("samples_per_prompt") or 1
    where += [f"{k} replies each"] if k > 1 else []
    return f"{n} ({', '.join(where)})" if where else str(n)


def hidden_conditions(data: dict) -> str:
    """How the answers were made to differ, in words, from a data.json: hidden instructions
    in the sampling prompt's system turn and/or the sampler's logit biases (ric.data)."""
    cfg, parts = data["config"], []
    instructions = data["source"].get("instructions") or []
    if instructions:
        parts.append(
            "each under a hidden instruction drawn from assets/prompts/instructions.txt in the "
            "system turn of the sampling prompt only: "
            + ", ".join(f'"{i}"' if i else "none" for i in instructions)
        )
    for key, what in (("word_bias", "towards positive words"), ("end_bias", "towards end-of-text")):
        if any(cfg.get(key) or []):
            parts.append(f"a hidden logit bias {what} of {cfg[key]} (one per sample of a prompt)")
    if not instructions:  # the ones a recipe may use, listed wherever the data is described
        shipped = read_instructions(DEFAULT.instructions)
        parts.append(
            "no hidden instruction (assets/prompts/instructions.txt holds those a recipe may "
            "put in the sampling prompt: " + ", ".join(f'"{i}"' for i in shipped if i) + ")"
        )
    return "; ".join(parts)


def soft_targets_folder(stage: Path) -> Path | None:
    """The soft-target folder an SFT stage trained on (ric.distill), or None."""
    recipe = read_json(stage / "adapter" / "ric.json").get("extra", {}).get("recipe", {})
    if recipe.get("targets", "tokens") == "tokens" or not recipe.get("data_dir"):
        return None
    return targets_folder(recipe["data_dir"], recipe["targets"], recipe.get("target_k", 32))


STORED = " (stored)"
STORED_NOTE = "Carried from the previous docs/TRAINING.md: its run folder is not in this checkout"
COST_HEADING = "## Commands and their cost on this machine"


def previous_report(path: Path) -> tuple[dict, dict, str]:
    """The previous report's cost rows {step: line}, its "## " sections {heading: lines} and
    the machine its stored rows ran on, to carry what this run cannot regenerate."""
    if not path.exists():
        return {}, {}, ""
    rows, sections, heading, machine_line, stored_machine = {}, {}, None, "", ""
    for line in path.read_text().splitlines():
        if line.startswith("Generated by ") and not machine_line:
            machine_line = line.partition("machine: ")[2].rstrip(".")
        if STORED_NOTE in line and not stored_machine:
            stored_machine = line.partition("(machine: ")[2].removesuffix(").")
        if line.startswith("## "):
            heading = line[3:]
            sections[heading] = []
            continue
        if heading is not None:
            sections[heading].append(line)
        if heading == COST_HEADING[3:] and line.startswith("| ") and not line.startswith("| step"):
            rows[line.split(" | ")[0][2:]] = line
    return rows, sections, stored_machine or machine_line


def _iter_name(mors: Path) -> str:
    return f"{mors.parent.parent.name}/{mors.parent.name}"


def stored_row(line: str) -> str:
    step, _, rest = line[2:].partition(" | ")
    return f"| {step.removesuffix(STORED)}{STORED} | {rest}"


def _row_key(line: str) -> str:
    """A table row's model key: the first cell, or the "(key)" that ends it (fronts table)."""
    cell = line[2:].partition(" | ")[0].removesuffix(STORED)
    m = re.search(r"\(([^()]*)\)$", cell)
    return m.group(1) if m else cell


def _first_table(lines: list[str], start: int) -> list[int]:
    """Indices of the first markdown table after lines[start], before the next "## " heading."""
    for i in range(start, len(lines)):
        if lines[i].startswith("## "):
            return []
        if lines[i].startswith("|"):
            table = [i]
            while table[-1] + 1 < len(lines) and lines[table[-1] + 1].startswith("|"):
                table.append(table[-1] + 1)
            return table
    return []


def carry_table_rows(lines: list[str], heading: str, sections: dict) -> list[str]:
    """Rows of the previous report's table under `heading` for models this run does not
    report (their run folders are gone), appended to this run's table marked "(stored)". Only
    each section's first table: a fronts section has one more per front."""
    if f"## {heading}" not in lines:
        return lines
    table = _first_table(lines, lines.index(f"## {heading}") + 1)
    if not table:
        return lines
    old = sections.get(heading) or sections.get(heading + STORED) or []
    written = {_row_key(lines[i]) for i in table[2:]}
    rows = [old[i] for i in _first_table(old, 0)[2:]]
    carried = [stored_row(r) for r in rows if _row_key(r) not in written]
    at = table[-1] + 1
    return lines[:at] + carried + lines[at:]


def stored_sections(sections: dict, written: list[str], machine: str) -> list[str]:
    """The previous report's sections this one does not write, headed "(stored)" with a note
    naming the machine they ran on (a section stored before keeps its first note)."""
    heads = {line[3:].removesuffix(STORED) for line in written if line.startswith("## ")}
    out = []
    for head, body in sections.items():
        name = head.removesuffix(STORED)
        if name in heads or name.startswith("The embedded image model"):
            continue
        if len(body) < 2 or not body[1].startswith(STORED_NOTE):
            body = ["", f"{STORED_NOTE} (machine: {machine}).", *body]
        out += [f"## {name}{STORED}", *body]
    return out


def _cmd(log: dict, fallback: str) -> str:
    return f"`{log.get('command', fallback)}`"


def data_section(data_dirs: list[Path], datas: list[dict], recipes: list[dict]) -> list[str]:
    """The offline data sets: size, sampling plan, lengths, guards, reward correlations."""
    data = datas[-1]
    names = data["reward_names"]
    corr = np.array(data["reward_correlation"])
    lines = [
        "",
        "## Offline data",
        "",
        *[
            f"Also prepared: {d} ({dd['n_rows']} rows, `{dd.get('command', '')}`); the data "
            "column of the stage table says which stages used which set."
            for d, dd in zip(data_dirs[:-1], datas[:-1], strict=True)
        ],
        *([""] if len(datas) > 1 else []),
        f"{data_dirs[-1]}: "
        f"{data['n_rows']} answers for {data['config']['max_prompts'] or 'all'} training "
        f"prompts: {data['config']['samples_per_prompt']} samples per prompt from the base model "
        f"(temperatures {data['config']['temperatures']}, repetition penalty "
        f"{data['config'].get('repetition_penalty', 1.0)}), "
        + hidden_conditions(data)
        + ". Every training response is the model's own text from its first token to its own "
        "end-of-text; answers that hit the token cap are not trained on. "
        + (
            f"Token cap {data['lengths']['max_new_tokens']}: "
            f"{data['lengths']['share_finished']:.0%} of {data['source'].get('n_samples')} "
            "samples ended by themselves (median "
            f"{data['lengths']['n_tokens_quantiles']['0.5']:.0f} tokens, 90% quantile "
            f"{data['lengths']['n_tokens_quantiles']['0.9']:.0f}). "
            if data.get("lengths")
            else ""
        )
        + (
            "The training responses themselves (ric.quality): the most common 3-word opening "
            f'"{data["guards"]["top_opening"]}" starts {data["guards"]["top_opening_share"]:.0%}'
            f" of them, {data['guards']['shared_opening_share']:.0%} share their first 5 words "
            f"with answers to >= 3 other prompts, echo {data['guards']['echo_rate']:.0%}, "
            f"distinct-2 {data['guards']['distinct_2']:.2f}. "
            if data.get("guards")
            else ""
        )
        + "Every answer is scored with every candidate reward (docs/REWARDS.md: spread and "
        "conflicts). Spearman correlation between the rewards over these answers:",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, n in enumerate(names):
        row = " | ".join(f"{corr[i, j]:+.2f}" for j in range(len(names)))
        lines.append(f"| {n} | {row} |")
    iu = np.triu_indices(len(names), 1)

    def most_conflicting(c: np.ndarray) -> str:
        k = int(np.argmin(c[iu]))
        return f"**{names[iu[0][k]]} vs {names[iu[1][k]]}** (Spearman {c[iu][k]:+.2f})"

    lines += [
        "",
        f"Most conflicting pair over all rows: {most_conflicting(corr)}. "
        + (
            f"The 2-objective default conditions on **{' and '.join(recipes[0]['rewards'])}**."
            if recipes
            else f"The default conditions on **{' and '.join(DEFAULT.rewards)}**."
        ),
        "",
    ]
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", default="runs")
    p.add_argument(
        "--data",
        default="runs/data",
        help="offline data folders; the last one is described in full",
    )
    p.add_argument(
        "--stages", default="runs/sft", help="SFT output folders, in order ('' for none yet)"
    )
    p.add_argument(
        "--fronts", default="base=runs/eval_base,offline=runs/eval_sft,online=runs/eval_online"
    )
    p.add_argument(
        "--plot", default="", help="comma-separated --fronts keys to plot (default: all)"
    )
    p.add_argument(
        "--calibration", default="", help="train/calibrate.py output folders, joined by commas"
    )
    p.add_argument(
        "--examples",
        default="",
        help="KEY=N,...: the first N prompts' replies of front KEY at three weights",
    )
    p.add_argument("--out", default="docs/TRAINING.md")
    p.add_argument(
        "--stored",
        default=None,
        help="previous report to carry missing stages from (default: --out; '' for none)",
    )
    p.add_argument("--summary", default="", help="a findings paragraph placed under the title")
    p.add_argument(
        "--image",
        default="assets/image",
        help="shipped image model folder (model/, front.json, base_front.json, grid.png); "
        "'' to leave the image section out",
    )
    args = p.parse_args(argv)
    runs, out = Path(args.runs), Path(args.out)
    # A data set whose folder is gone (a fresh checkout) is reported from the previous report.
    data_dirs = [Path(d) for d in args.data.split(",") if d and (Path(d) / "data.json").exists()]
    datas = [read_json(d / "data.json") for d in data_dirs]
    # Only finished stages count: a stage's train_log.json is written when it completes.
    stages = [
        Path(s) for s in args.stages.split(",") if s and (Path(s) / "train_log.json").exists()
    ]
    logs = [read_json(s / "train_log.json") for s in stages]
    recipes = [read_json(s / "adapter" / "ric.json")["extra"]["recipe"] for s in stages]
    iters = sorted(runs.glob("online*/iter_*/mors.json"))
    stored = Path(args.out if args.stored is None else args.stored) if args.stored != "" else None
    old_rows, old_sections, old_machine = previous_report(stored) if stored else ({}, {}, "")
    fronts = {}
    for item in args.fronts.split(","):
        key, folder = item.split("=")
        if (Path(folder) / "front.json").exists():
            fronts[key] = read_json(Path(folder) / "front.json")

    lines = [
        "# Training the embedded default",
        "",
        "Generated by `python train/report.py` from the run artifacts in runs/; "
        f"machine: {machine()}.",
        "",
        *([args.summary, ""] if args.summary else []),
        "## Commands and their cost on this machine",
        "",
        "| step | command | wall | CPU |",
        "|---|---|---|---|",
    ]
    for d, dd in zip(data_dirs, datas, strict=True):
        fallback = "python train/prepare_dataset.py --config train/recipes/cpu_data.yaml"
        lines.append(
            f"| offline data ({d.name}) | {_cmd(dd, fallback)}"
            f" | {_mins(dd['wall_seconds'])} | {_mins(dd['cpu_seconds'])} |"
        )
    seen_targets = set()
    for s in stages:  # soft targets: built once per data set, with their own cost log
        folder = soft_targets_folder(s)
        if folder and folder not in seen_targets and (folder / COST_FILE).exists():
            seen_targets.add(folder)
            cost = clock_total(folder)
            lines.append(
                f"| soft targets ({folder}) | built by the first SFT on {folder.parent} "
                f"(ric.distill.build_targets) | {_mins(cost['wall_seconds'])} "
                f"| {_mins(cost['cpu_seconds'])} |"
            )
    for s, log in zip(stages, logs, strict=True):
        lines.append(
            f"| SFT ({s.name}) | {_cmd(log, 'python train/sft.py --config train/recipes/cpu_sft.yaml')}"
            f" | {_mins(log['wall_seconds'])} | {_mins(log['cpu_seconds'])} |"
        )
    for m in iters:
        log, d = read_json(m.parent / "sft" / "train_log.json"), read_json(m)
        lines.append(
            f"| MORS {_iter_name(m)} | {_cmd(d, 'python train/online.py')} | "
            f"{_mins(d.get('wall_seconds', 0) + log['wall_seconds'])}"
            f" | {_mins(d.get('cpu_seconds', 0) + log['cpu_seconds'])} |"
        )
    at = len(lines)  # training stages whose runs are gone go here, once the table is known
    cal_files = [Path(d) / "calibration.json" for d in args.calibration.split(",") if d]
    cals = [read_json(f) for f in cal_files if f.exists()]
    for cal in cals:
        lines.append(
            f"| calibrate the mapping range | {_cmd(cal, 'python train/calibrate.py')} | "
            f"{_mins(cal['wall_seconds'])} | {_mins(cal['cpu_seconds'])} |"
        )
    for k, f in fronts.items():
        lines.append(
            f"| evaluate {k} | {_cmd(f, 'python train/evaluate.py')} | "
            f"{_mins(f['wall_seconds'])} | {_mins(f['cpu_seconds'])} |"
        )
    written = {line.split(" | ")[0][2:] for line in lines if line.startswith("| ")}
    carried = [
        stored_row(line)
        for step, line in old_rows.items()
        if step.removesuffix(STORED) not in written
    ]
    lines[at:at] = carried
    if carried:
        lines += ["", f"Rows marked (stored): {STORED_NOTE} (machine: {old_machine})."]
    if datas:
        lines += data_section(data_dirs, datas, recipes)
    else:
        lines.append("")
    if stages:
        lines += [
            "## SFT stages",
            "",
            "| stage | data | rewards | init | LoRA | layers | lr | schedule | batch | steps | "
            "examples | mean loss | tag contrast (nats) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    for s, log, r in zip(stages, logs, recipes, strict=True):
        layers = f"last {r['lora_layers']}" if r.get("lora_layers") else "all"
        lines.append(
            f"| {s.name} | {r['data_dir']} | {', '.join(r['rewards'])} | "
            f"{r.get('init_adapter') or 'base'} | "
            f"r={r['lora_r']}, "
            f"alpha={r['lora_alpha']} | {layers} | {r['learning_rate']} | {r['lr_scheduler']} | "
            f"{r['batch_size']} | {log['steps']} | {log['n_examples']} | "
            f"{log['train_loss']:.3f} | {_contrast(log.get('tag_contrast'))} |"
        )
    if any(log.get("tag_contrast") for log in logs):
        lines += [
            "",
            "Tag contrast (`ric.sft.tag_contrast`, computed at the end of each stage on "
            "pairs of training responses to the same prompt): how many nats less likely a "
            "response becomes under the other response's tags, mean +- standard error. 0 means "
            "the model ignores its tags.",
        ]
    if stages:
        lines.append("")
    for s in stages:
        lines += contrast_curve(s)
    for m in iters:
        d = read_json(m)
        steps = read_json(m.parent / "sft" / "train_log.json")["steps"]
        floors = d.get("floors") or {}
        lines += [
            f"## Online MORS, {_iter_name(m)}",
            "",
            f"`{d.get('command', 'python train/online.py')}`: "
            f"{d['generated']} generations at frontier targets, {d['finished']} ended by "
            f"themselves, {d['trainable']} trainable, {d.get('looped', 0)} dropped as loops, "
            + (
                f"{d['below_floor']} below the "
                + " or the ".join(_floor(n, v) for n, v in floors.items())
                + f" (offline rows: {d['offline_below_floor']}), "
                if floors
                else ""
            )
            + f"{d['kept']} kept (any reward >= its 0.7 quantile "
            f"{[round(x, 2) for x in d['quantile_thresholds']]}); mixed with "
            f"{d['mixed'] - d['kept_total']} filtered offline rows for {steps} SFT steps.",
            "",
        ]
    at_sections = len(lines)  # the previous report's sections this one cannot write go here
    for cal in cals:
        lines += calibration_section(cal)
    if fronts:
        first = next(iter(fronts.values()))
        lines += [
            "## Fronts on held-out prompts",
            "",
            "Mean normalized rewards per preference over the first N held-out prompts "
            "(assets/prompts/eval.txt) unless the prompts column names other ones; "
            "hypervolume with reference point "
            f"{first['reference_point']} (each reward's 0.02 training quantile), the same for "
            "all rows.",
            "",
            "| model | mapping | prompts | points | hypervolume | sparsity | "
            "Spearman (weight vs achieved) | monotonicity |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, f in fronts.items():
            c = f.get("controllability", {})
            mapping = _mapping(f)
            sp = ", ".join(_fmt(x) for x in c.get("spearman", [])) or "n/a"
            mono = ", ".join(_fmt(x) for x in c.get("monotonicity", [])) or "n/a"
            lines.append(
                f"| {f['label']} ({key}) | {mapping} | {_prompts(f)} | "
                f"{len(f['points'])} | "
                f"{f['hypervolume']:.4f} | "
                f"{f['sparsity']:.4f} | {sp} | {mono} |"
            )
        split = [
            (k, f)
            for k, f in fronts.items()
            if f["per_prompt"]["n_prompts"] > FIRST
            and not is_base_front(f)
            and not f["settings"].get("skip_prompts")  # the slices count from prompt 1
        ]
        if split:
            lines += [
                "",
                f"Spearman on prompt slices (the same samples; prompts 1-{FIRST} are the slice "
                "every earlier sweep used, the rest were never looked at before this sweep):",
                "",
                "| model | Spearman, prompts 1-100 | Spearman, the rest |",
                "|---|---|---|",
            ]
            for key, f in split:
                lines.append(f"| {f['label']} ({key}) | {slice_spearman(f)} |")
        lines += ["", "![fronts](training_front.png)", ""]
        for key, f in fronts.items():
            if is_base_front(f):
                continue
            lines += [
                f"### {f['label']} ({key}): points",
                "",
                "| weights | desired | achieved (mean) |",
                "|---|---|---|",
            ]
            for pt in f["points"]:
                w = [round(x, 2) for x in pt["weights"]]
                d = [round(x, 2) for x in pt["desired"]]
                lines.append(f"| {w} | {d} | {pt['achieved']} |")
            lines.append("")
        guards = guards_section(fronts)
        lines += guards
        print("\n".join(guards))
        folders = dict(item.split("=") for item in args.fronts.split(","))
        for item in filter(None, args.examples.split(",")):
            key, _, n = item.partition("=")
            if not n.isdigit():
                p.error(f"--examples takes KEY=N items (N a whole number), got {item!r}")
            if key in fronts:
                lines += examples_section(Path(folders[key]), int(n), fronts[key]["label"])
        keys = [k for k in args.plot.split(",") if k in fronts] or list(fronts)
        # Two runs of one method can share a label (two MORS iterations): the legend adds the key.
        labels = [fronts[k]["label"] for k in keys]
        save_front_figures(
            [
                {**fronts[k], "label": f"{fronts[k]['label']} ({k})"}
                if labels.count(fronts[k]["label"]) > 1
                else fronts[k]
                for k in keys
            ],
            out.parent / "training_front",
        )
    if args.image and (Path(args.image) / "front.json").exists():
        lines += image_section(Path(args.image), out.parent)
    for heading in ("Fronts on held-out prompts", "Quality guards"):
        lines = carry_table_rows(lines, heading, old_sections)
    lines[at_sections:at_sections] = stored_sections(old_sections, lines, old_machine)
    atomic_write_text(out, "\n".join(lines) + "\n")
    print(f"written {out}")


def contrast_curve(stage: Path) -> list[str]:
    """The held-out tag contrast an SFT stage logged while it trained (monitor_steps)."""
    from ric.sft import CONTRAST_LOG

    log = stage / CONTRAST_LOG
    rows = read_jsonl(log) if log.exists() else []
    if not rows:
        return []
    lines = [
        f"Tag contrast of {stage.name} while it trained, on the farthest pair of each of "
        f"{rows[0]['farthest']['n_pairs']} prompts held out of its training (nats; whole answer, "
        "its first 5 tokens, its end-of-text token):",
        "",
        "| step | whole answer | first 5 tokens | end of text | pairs positive |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["farthest"]
        lines.append(
            f"| {r['step']} | {c['mean_nll_increase']:+.2f} +- {c['sem']:.2f} | "
            f"{c['first_tokens']['mean_nll_increase']:+.2f} | "
            f"{c['end_token']['mean_nll_increase']:+.2f} | {c['frac_positive']:.0%} |"
        )
    return [*lines, ""]


def examples_section(folder: Path, n: int, label: str) -> list[str]:
    """The first n prompts' replies at both ends and the middle of the sweep, copied from the
    evaluation's samples.jsonl as generated (no choosing): what a user sees as the slider moves."""
    rows = read_jsonl(folder / "samples.jsonl")
    sweep = sorted({tuple(r["weights"]) for r in rows if r["weights"]}, key=lambda w: w[0])
    if not sweep or n <= 0:
        return []
    picks = [sweep[0], sweep[len(sweep) // 2], sweep[-1]]
    prompts = list(dict.fromkeys(r["prompt"] for r in rows))[:n]
    lines = [
        f"## Example replies ({label})",
        "",
        f"The first {len(prompts)} prompts of `{folder}/samples.jsonl`, each at three preference "
        "weights, exactly as sampled (one sample each, not selected).",
        "",
    ]
    for prompt in prompts:
        lines += [f"**{prompt}**", ""]
        for w in picks:
            r = next((r for r in rows if r["prompt"] == prompt and tuple(r["weights"]) == w), None)
            if r is None:  # a sweep point not evaluated yet (an interrupted run)
                continue
            text = " ".join(r["response"].split())
            text = text if len(text) <= 600 else text[:600] + " [...]"
            ach = ", ".join(f"{x:.2f}" for x in r["achieved"])
            wt = ", ".join(f"{x:.1f}" for x in w)
            lines.append(f"- w = ({wt}), achieved ({ach}): {text}")
        lines.append("")
    return lines


def _image_eval_command(settings: dict) -> str:
    """The evaluate_images.py command line that the recorded settings correspond to."""
    from ric.diffusion import ImageEvalConfig

    default = ImageEvalConfig()
    flags = []
    for key, value in settings.items():
        if hasattr(default, key) and value != getattr(default, key) and key != "label":
            text = str(value).lower() if isinstance(value, bool) else value
            text = f'"{value}"' if isinstance(value, list) else text
            text = shlex.quote(text) if isinstance(text, str) else text
            flags.append(f"--{key.replace('_', '-')} {text}")
    return " ".join(["python train/evaluate_images.py", *flags])


def image_section(folder: Path, docs: Path) -> list[str]:
    """The embedded image model: training cost, front vs the caption-only point, the grid
    (docs/IMAGE.md holds the whole story)."""
    meta = read_json(folder / "model" / "ric.json")
    train = meta["extra"]["train"]
    front = read_json(folder / "front.json")
    base = read_json(folder / "base_front.json") if (folder / "base_front.json").exists() else None
    st = front["settings"]
    timing = train.get("sample_timing", {})
    c = front["controllability"]
    resumed = f", resumed at step {train['resumed_from']}" if train.get("resumed_from") else ""
    lines = [
        "## The embedded image model (assets/image/; docs/IMAGE.md)",
        "",
        "| step | command | wall | CPU |",
        "|---|---|---|---|",
        f"| train {train['steps']} steps of {train['batch_size']}{resumed} | `python "
        "train/train_diffusion.py --config train/recipes/cpu_image.yaml "
        f"--max-steps {train['steps']}` | "
        f"{_mins(train['train_seconds'])} | {_mins(train['cpu_seconds'])} |",
    ]
    for f in filter(None, [front, base]):
        lines.append(
            f"| evaluate {f['label']} | {_cmd(f, _image_eval_command(f['settings']))} | "
            f"{_mins(f['wall_seconds'])} | {_mins(f['cpu_seconds'])} |"
        )
    per = "per weight per subject" if meta["extra"].get("subjects") else "per weight"
    lines += [
        "",
        f"A batch of {timing.get('n_images', 4)} images ({timing.get('num_inference_steps')} "
        f"DDIM steps, guidance {timing.get('guidance_scale')}, {timing.get('threads')} threads) "
        f"took **{timing.get('seconds', float('nan')):.2f} s** (measured by "
        "`ric.image.sampling.time_generation` at the end of training, with the training "
        "recipe's guidance; docs/IMAGE.md times the shipped settings; the target is under 10 s).",
        "",
        f"Sweep: w_1 in {{0, 0.1, ..., 1}}, {st['n_images']} images {per} (the same seeds "
        f"for every weight), mapping `{st.get('method') or meta['mapping']}`; "
        f"hypervolume with reference point {front['reference_point']} (each reward's 0.02 "
        "training quantile).",
        "",
        "| model | hypervolume | Spearman (weight vs achieved) | monotonicity |",
        "|---|---|---|---|",
        f"| {front['label']} | {front['hypervolume']:.3f} | "
        f"{', '.join(_fmt(x) for x in c['spearman'])} | "
        f"{', '.join(_fmt(x) for x in c['monotonicity'])} |",
    ]
    if base:
        lines.append(
            f"| {base['label']} (null condition) | {base['hypervolume']:.3f} | n/a | n/a |"
        )
    subjects = front.get("per_subject")
    named = " named |" if subjects else ""
    lines += [
        "",
        f"| weights | desired | achieved (mean) |{named}",
        "|---|---|---|" + "---|" * bool(subjects),
    ]

    def named_share(points, i):
        return f" {np.mean([p[i]['named_rate'] for p in points]):.0%} |"

    for i, pt in enumerate(front["points"]):
        w = [round(x, 2) for x in pt["weights"]]
        d = [round(x, 2) for x in pt["desired"]]
        share = named_share(subjects.values(), i) if subjects else ""
        lines.append(f"| {w} | {d} | {[round(x, 3) for x in pt['achieved']]} |{share}")
    if base:
        share = (
            named_share(base["per_subject"].values(), 0)
            if subjects and "per_subject" in base
            else ""
        )
        lines.append(
            f"| caption only | - | {[round(x, 3) for x in base['points'][0]['achieved']]} |{share}"
        )
    grid = folder / "subjects.png" if (folder / "subjects.png").exists() else folder / "grid.png"
    lines += ["", f"![image samples]({os.path.relpath(grid, docs)})", ""]
    return lines


if __name__ == "__main__":
    main()
