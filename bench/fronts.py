"""RiC against Rewarded Soups, MORLHF, prompt-only and the base model (docs/METHOD.md section 8).

    python bench/fronts.py --report-only     # docs/BENCHMARKS.md + docs/benchmarks.json from runs/
    python bench/fronts.py                   # run (resumably) what is missing, then the report
    python bench/fronts.py --methods soups,prompt_only --max-prompts 20   # a subset, quicker
    python bench/fronts.py --methods morlhf,ric_offline,ric_online,base --shipped assets/text
        # a fresh clone: MORLHF needs only the shipped adapter's statistics, RiC's and the
        # base model's fronts are the shipped copies, and the report carries the other rows
        # (points, metrics, costs) from the last docs/benchmarks.json, marked as carried
    bash bench/run_baselines.sh              # everything, RiC's own runs included

Every method is evaluated the way train/evaluate.py evaluates RiC (ric.evaluation.evaluate_front):
the first 60 prompts of assets/prompts/eval.txt, the same generation settings, the same engine
(--backend, "auto" as RiC's fronts: onnx int8 on a CPU-only machine; each soup mix and MORLHF
run is merged and exported once), the same reward functions, rewards normalized with the
RewardStats of RiC's final offline stage (runs/sft/adapter) and one reference point for every
hypervolume. Layout, under --runs:

    data/, sft/, online2/, eval_{base,sft,online2}/     RiC's runs, reused
    (train/run_default.sh; the shipped mapping)
    bench/<method>/front.json                       one front per method (copied when reused)
    bench/soups/<reward>/{adapter,train_log.json}   Rewarded Soups ingredients
    bench/morlhf/w<w1>_<w2>/{adapter,train_log.json} one MORLHF (GRPO) run per preference
    bench/throughput.json                           bench/throughput.py
    bench/machine.json                              the machine the runs ran on

Training costs are CPU-seconds from the runs' own logs (ric.runlog.RunClock): RiC = every
data set and SFT stage behind its adapter (ric.runlog.adapter_lineage; + MORS iterations),
Rewarded Soups = its data + its ingredients' SFTs, MORLHF = its runs.
"""

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

from ric.artifacts import atomic_write_text, read_json, write_json
from ric.defaults import DEFAULT
from ric.pareto import hypervolume, pareto_mask, sparsity

METHODS = {  # name -> label, in table order
    "ric_offline": "RiC (offline)",
    "ric_online": "RiC (online, MORS)",
    "soups": "Rewarded Soups",
    "morlhf": "MORLHF (GRPO)",
    "prompt_only": "prompt-only",
    "base": "base model",
}
RIC = ("ric_offline", "ric_online")
# The fronts train/run_default.sh writes while building the embedded default, and the copies
# train/ship.py keeps of them beside the shipped adapter (--shipped: all a fresh clone has).


def shipped_stage(shipped: Path) -> tuple[str, str]:
    """The MORS stage train/run_default.sh shipped (its step 7 picks one at run time) and the
    run folder of its front at the shipped range (step 7b may choose another range than the
    stage's own evaluation used), as the shipped front records them: runs/<stage>/adapter and
    runs/<folder>. Fronts written before `out` was recorded: runs/eval_<stage>."""
    front = Path(shipped) / "front.json"
    if not front.exists():
        raise FileNotFoundError(f"{front} is missing: no shipped text default to compare with")
    settings = read_json(front)["settings"]
    stage = Path(settings["adapter"]).parent.name
    return stage, Path(settings.get("out") or f"runs/eval_{stage}").name


ONLINE, ONLINE_FRONT = shipped_stage(Path(__file__).resolve().parents[1] / "assets" / "text")
REUSED = {"base": "eval_base", "ric_offline": "eval_sft", "ric_online": ONLINE_FRONT}
SHIPPED = {
    "base": "base_front.json",
    "ric_offline": "offline_front.json",
    "ric_online": "front.json",
}
# Settings a reused front must share with the benchmark's own evaluations.
SAME_SETTINGS = (
    "prompts",
    "max_prompts",
    "skip_prompts",
    "max_new_tokens",
    "repetition_penalty",
    "temperature",
    "top_p",
    "seed",
)
COMMANDS = {
    "report": "python bench/fronts.py --report-only",
    "all runs": "bash bench/run_baselines.sh",
    "baselines only": "python bench/fronts.py",
    "throughput": "python bench/throughput.py",
}


# ---------------------------------------------------------------- running


def eval_config(args, method: str, **kw):
    from ric.evaluation import EvalConfig

    kw.setdefault("adapter", None)  # baselines: the policy is passed in, not loaded
    return EvalConfig(
        prompts=args.prompts,
        max_prompts=args.max_prompts,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        dtype=args.dtype,
        backend=args.backend,
        label=METHODS[method],
        out=str(Path(args.runs) / "bench" / method),
        **kw,
    )


def _save(front: dict, method: str, args, **extra) -> dict:
    front = {**front, "method": method, **extra}
    write_json(Path(args.runs) / "bench" / method / "front.json", front)
    return front


def reused_front(runs: Path, method: str, shipped: Path | None = None) -> Path | None:
    """RiC's (or the base model's) own front for `method`: the rebuild's, else the copy shipped
    in `shipped` (train/ship.py's layout), else None."""
    if method not in REUSED:
        return None
    found = [runs / REUSED[method] / "front.json"]
    found += [Path(shipped) / SHIPPED[method]] if shipped else []
    return next((src for src in found if src.exists()), None)


def drop_stale_morlhf_front(folder: Path, recipe) -> list[str]:
    """The MORLHF runs under FOLDER whose train_log.json has fewer steps than the recipe's
    max_steps (a raised budget). If any, their front is stale: it is removed with the samples
    and sweep.json the evaluation would otherwise resume from."""
    logs = {p.parent.name: read_json(p) for p in sorted(folder.glob("w*/train_log.json"))}
    behind = [name for name, log in logs.items() if log.get("steps", 0) < recipe.max_steps]
    if behind and (folder / "front.json").exists():
        for name in ("front.json", "samples.jsonl", "sweep.json"):
            (folder / name).unlink(missing_ok=True)
    return behind


def run_method(method: str, args, meta) -> None:
    """Produce runs/bench/<method>/front.json (training first where needed)."""
    from ric.baselines import (
        MorlhfRecipe,
        SoupsRecipe,
        load_morlhf,
        load_prompt_only,
        load_soup,
        ric_training_rows,
        same_normalization,
        shared_stats,
        train_morlhf_all,
        train_soup_ingredients,
    )
    from ric.config import load_config
    from ric.evaluation import evaluate_front
    from ric.mapping import simplex_grid
    from ric.normalization import RewardStats

    runs, bench = Path(args.runs), Path(args.runs) / "bench"
    if method == "morlhf":
        recipe = load_config(MorlhfRecipe, args.morlhf_recipe)
        if behind := drop_stale_morlhf_front(bench / method, recipe):
            print(f"morlhf: {behind} ran fewer steps than the recipe asks; resumed, re-evaluated")
    if (bench / method / "front.json").exists():
        print(f"{method}: front.json exists, kept")
        return
    adapter = {"ric_offline": Path(args.ric_adapter), "ric_online": Path(args.online_adapter)}
    src = reused_front(runs, method, getattr(args, "shipped", None))
    if src is not None:
        front = read_json(src)
        ours = eval_config(args, method).__dict__
        # A setting missing from an older front had its default then (e.g. skip_prompts).
        diff = [k for k in SAME_SETTINGS if front["settings"].get(k, ours[k]) != ours[k]]
        _save(front, method, args, label=METHODS[method], source=str(src), settings_differ=diff)
        print(f"{method}: reused {src}" + (f" (settings differ: {diff})" if diff else ""))
        return
    if method in REUSED:  # not reused: RiC's adapters (or the base model) are evaluated here
        if method in RIC and not (adapter[method] / "ric.json").exists():
            print(f"{method}: no adapter at {adapter[method]}; run the RiC pipeline first")
            return
        path = adapter[method] if method in RIC else args.ric_adapter
        cfg = eval_config(args, method, adapter=str(path), base=method == "base")
        _save(evaluate_front(cfg), method, args)
        print(f"{method}: written {bench / method / 'front.json'}")
        return
    stats = RewardStats.from_dict(meta.stats)
    # The baselines train on the data of RiC's final offline stage, whose statistics tag it.
    data_dir = Path(meta.extra.get("recipe", {}).get("data_dir") or runs / "data")
    note = "desired = RiC's mapping of w, for reference: this method never sees it"

    # The rows RiC's offline stage trained on (its data less its monitor's held-out prompts).
    # MORLHF reads only the statistics, which the adapter carries: it can run without the data
    # (a fresh checkout has the shipped adapter but not runs/).
    data_optional = method == "morlhf" and not data_dir.exists()
    if data_optional:
        print(f"morlhf: {data_dir} is absent; the RiC adapter's own statistics are used")
    needs_rows = method in ("soups", "morlhf") and not data_optional
    rows = ric_training_rows(meta, data_dir) if needs_rows else []

    def same_data(rewards) -> None:
        """Baselines train on RiC's data, whose statistics must be the RiC adapter's."""
        if list(rewards) != meta.reward_names:
            raise ValueError(f"{method} rewards {rewards} != RiC's {meta.reward_names}")
        if not data_optional and not same_normalization(shared_stats(rows, rewards), stats):
            raise ValueError(f"{data_dir} does not give the RiC adapter's reward statistics")

    if method == "prompt_only":
        policy = load_prompt_only(meta, dtype=args.dtype, backend=args.backend)
        _save(evaluate_front(eval_config(args, method), policy), method, args, desired_note=note)
    elif method == "soups":
        recipe = load_config(SoupsRecipe, args.soups_recipe)
        recipe.data_dir, recipe.out_dir = str(data_dir), str(bench / "soups")
        same_data(recipe.rewards)
        adapters = train_soup_ingredients(recipe, stats, rows)
        policy = load_soup(
            meta,
            adapters,
            recipe.model,
            args.dtype,
            recipe.combination,
            backend=args.backend,
            mix_dir=bench / "soups" / "mixes",
        )
        front = evaluate_front(eval_config(args, method), policy)
        _save(front, method, args, desired_note=note, combination=recipe.combination)
    elif method == "morlhf":  # its recipe was read above, to check the front is up to date
        recipe.data_dir, recipe.out_dir = str(data_dir), str(bench / "morlhf")
        same_data(recipe.rewards)
        grid = simplex_grid(len(recipe.rewards), len(recipe.weights))
        if not np.allclose(sorted(map(tuple, recipe.weights)), sorted(map(tuple, grid))):
            raise ValueError(f"MORLHF weights must be the evaluation grid {grid.tolist()}")
        adapters = train_morlhf_all(recipe, stats)
        policy = load_morlhf(meta, adapters, recipe.model, args.dtype, backend=args.backend)
        cfg = eval_config(args, method, points=len(recipe.weights))
        _save(evaluate_front(cfg, policy), method, args, desired_note=note)
    print(f"{method}: written {bench / method / 'front.json'}")


def run_all(args) -> None:
    from ric.models import load_adapter_meta
    from ric.runlog import machine_info

    # RiC's metadata (its statistics) serves the baselines; the reused fronts need none of it.
    need_meta = set(args.methods) & {"prompt_only", "soups", "morlhf"}
    meta = load_adapter_meta(args.ric_adapter) if need_meta else None
    write_json(Path(args.runs) / "bench" / "machine.json", machine_info())
    for method in args.methods:
        run_method(method, args, meta)


# ---------------------------------------------------------------- costs and metrics


def _stages(adapter: Path) -> list[dict] | None:
    """The stages behind an adapter (ric.runlog.adapter_lineage); None when the adapter or a
    stage before it is missing (a shipped adapter in a clone without runs/)."""
    from ric.runlog import adapter_lineage

    try:
        return adapter_lineage(adapter) if (Path(adapter) / "ric.json").exists() else None
    except FileNotFoundError:
        return None


def _lineage(*adapters: Path) -> dict:
    """{part: CPU-seconds} over every stage behind the adapters; a data set shared by several
    (the soups' ingredients) counts once. Empty when an adapter is missing; a stage before it
    that is gone (a clone without runs/) is a None part (ric.runlog.lineage_cpu_seconds,
    partial), so the total is unknown and summarize carries it from the previous report."""
    from ric.runlog import lineage_cpu_seconds

    parts: dict = {}
    for a in adapters:
        if not (Path(a) / "ric.json").exists():
            return {}
        parts.update(lineage_cpu_seconds(a, partial=True))
    return parts


def train_costs(runs: Path, ric_adapter: Path, online_adapter: Path) -> dict:
    """method -> {"cpu_seconds": total or None, "parts": {part: cpu_seconds}}, from the logs.
    RiC's cost walks its adapter's lineage: every data set and every SFT stage (and MORS
    iteration) that led to it, so a multi-stage build is charged in full."""
    from ric.runlog import logged_cpu_seconds

    soups = sorted(p.parent for p in (runs / "bench" / "soups").glob("*/adapter/ric.json"))
    morlhf = {
        f"GRPO {p.parent.name}": logged_cpu_seconds(p)
        for p in sorted((runs / "bench" / "morlhf").glob("w*/train_log.json"))
    }

    def total(parts: dict) -> dict:
        ok = bool(parts) and all(v is not None for v in parts.values())
        return {"cpu_seconds": sum(parts.values()) if ok else None, "parts": parts}

    return {
        "ric_offline": total(_lineage(ric_adapter)),
        "ric_online": total(_lineage(online_adapter)),
        "soups": total(_lineage(*soups) if soups else {}),
        "morlhf": total(morlhf),
        "prompt_only": {"cpu_seconds": 0.0, "parts": {}},
        "base": {"cpu_seconds": 0.0, "parts": {}},
    }


def method_notes(runs: Path, ric_adapter: Path, online_adapter: Path) -> dict:
    """What each method's run was, in one line, read from the runs' own artifacts."""
    from ric.baselines import preference_instruction

    notes, bench = {}, runs / "bench"
    if (lineage := _stages(ric_adapter)) is not None:
        stages = []
        for st in lineage:
            log = Path(st["out_dir"]) / "train_log.json"
            info = read_json(log) if log.exists() else {}
            stages.append(
                f"{info.get('steps')} steps on {info.get('n_examples')} rows of {st['data_dir']}"
            )
        notes["ric_offline"] = (
            f"one LoRA, reward-conditioned SFT in {len(stages)} stage(s): " + "; ".join(stages)
        )
    if (lineage := _stages(online_adapter)) is not None:
        iters = [Path(st["out_dir"]).parent / "mors.json" for st in lineage]
        kept = [read_json(m).get("kept") for m in iters if m.exists()]
        notes["ric_online"] = f"the offline adapter + {len(kept)} MORS iteration(s), kept {kept}"
    parts = []
    for log in sorted((bench / "soups").glob("*/train_log.json")):
        meta = log.parent / "adapter" / "ric.json"
        info = read_json(meta)["extra"].get("baseline", {}) if meta.exists() else {}
        parts.append(
            f"{log.parent.name}: {read_json(log).get('steps')} steps on {info.get('n_rows')} "
            f"rows (top {100 * (1 - info.get('keep_quantile', 0.7)):.0f}%)"
        )
    if parts:
        front = bench / "soups" / "front.json"
        comb = read_json(front).get("combination", "cat") if front.exists() else "cat"
        notes["soups"] = (
            f"one LoRA per reward, plain-prompt SFT ({'; '.join(parts)}); "
            f"interpolated with w by peft combination '{comb}'"
        )
    logs = sorted((bench / "morlhf").glob("w*/train_log.json"))
    if logs:
        meta = logs[0].parent / "adapter" / "ric.json"
        rec = read_json(meta)["extra"].get("recipe", {}) if meta.exists() else {}
        steps = [read_json(log).get("steps") for log in logs]
        notes["morlhf"] = (
            f"{len(logs)} GRPO runs, steps {steps}; per step {rec.get('batch_size')} completions "
            f"({rec.get('num_generations')} per prompt) of <= {rec.get('max_completion_length')} "
            f"tokens, beta {rec.get('beta')}, lr {rec.get('learning_rate')}"
        )
    front = bench / "prompt_only" / "front.json"
    if front.exists():
        names = read_json(front)["reward_names"]
        example = preference_instruction([0.7, 0.3], names) if len(names) == 2 else ""
        notes["prompt_only"] = f'base model, system turn e.g. "{example}"; no training'
    notes["base"] = "base model, plain prompt, one point (no preference)"
    return notes


def dominated_share(points: np.ndarray, by: np.ndarray) -> float:
    """Share of `points` strictly dominated by some point of `by` (every reward maximized)."""
    dom = [np.any(np.all(by >= p, axis=1) & np.any(by > p, axis=1)) for p in points]
    return float(np.mean(dom)) if len(dom) else 0.0


def carried_front(previous: dict, m: str) -> dict | None:
    """The previous report's row for `m` as a front, when that method ran then but its runs are
    not under runs/ now (a fresh clone keeps docs/benchmarks.json, not runs/). Its points are
    the stored ones (4 decimals); its quality-bar verdict and costs are the stored ones too."""
    old = (previous.get("methods") or {}).get(m) or {}
    if old.get("status") != "ok":
        return None
    return {
        "label": old["label"],
        "reward_names": previous["reward_names"],
        "reference_point": previous["reference_point"],
        "hypervolume": old["hypervolume"],
        "settings": previous["settings"],
        "points": old["points"],
        "controllability": {
            "spearman_mean": old.get("spearman"),
            "monotonicity_mean": old.get("monotonicity"),
        },
        "cpu_seconds": old.get("eval_cpu_seconds"),
        "engine": old.get("engine"),
        "source": old.get("source"),
        "settings_differ": old.get("settings_differ"),
        "carried": {"front": old.get("front"), "below_quality_bars": old.get("below_quality_bars")},
    }


def summarize(
    runs: Path, ric_adapter: Path, online_adapter: Path, previous: dict | None = None
) -> dict:
    """benchmarks.json: every method's metrics with ONE reference point, and its cost.
    A method (or a cost) missing from runs/ is carried from `previous`, the last report, when
    it has it; such rows say so ("carried")."""
    previous = previous or {}
    fronts = {
        m: read_json(runs / "bench" / m / "front.json")
        for m in METHODS
        if (runs / "bench" / m / "front.json").exists()
    }
    for m in METHODS:
        if m not in fronts and (front := carried_front(previous, m)) is not None:
            fronts[m] = front
    costs = train_costs(runs, ric_adapter, online_adapter)
    notes = method_notes(runs, ric_adapter, online_adapter)
    for m, old in (previous.get("methods") or {}).items():
        if m not in costs or old.get("status") != "ok":
            continue
        if costs[m]["cpu_seconds"] is None:
            parts = old.get("train_cost_parts") or {}
            # Stages found here beyond the previous report's (a MORS iteration on the shipped
            # copy) are added; data sets come from the previous report's parts, so a
            # regenerated copy of the same data is not charged twice.
            new = {
                k: v
                for k, v in costs[m]["parts"].items()
                if v is not None and k not in parts and not k.startswith(("data ", "targets "))
            }
            costs[m] = {
                "cpu_seconds": (old.get("train_cpu_seconds") or 0) + sum(new.values())
                if new
                else old.get("train_cpu_seconds"),
                "parts": {**parts, **new},
                "carried": True,
            }
            if new:
                notes[m] = f"{old.get('notes')}; then, in this checkout: {', '.join(new)}"
        if costs[m].get("carried") or "carried" in fronts.get(m, {}):
            notes.setdefault(m, old.get("notes"))
    ref_from = next((m for m in (*RIC, *METHODS) if m in fronts), None)
    ref = np.array(fronts[ref_from]["reference_point"]) if ref_from else None
    points = {m: np.array([p["achieved"] for p in f["points"]]) for m, f in fronts.items()}

    def hv(m: str) -> float:
        # A carried front keeps its exact hypervolume while the reference point is unchanged.
        f = fronts[m]
        if "carried" in f and np.allclose(f["reference_point"], ref):
            return f["hypervolume"]
        return hypervolume(points[m], ref)

    ric_hv = {m: hv(m) for m in RIC if m in fronts}
    # The quality bars' relative floors come from the base model on the same prompts.
    base_guards = fronts["base"]["points"][0].get("guards") if "base" in fronts else None
    best_ric = max(ric_hv, key=ric_hv.get) if ric_hv else None
    out = {}
    for m, label in METHODS.items():
        row = {"label": label, "train_cpu_seconds": costs[m]["cpu_seconds"]}
        row["notes"] = notes.get(m)
        row["train_cost_parts"] = costs[m]["parts"]
        if costs[m].get("carried"):
            row["train_cost_carried"] = True
        if m not in fronts:
            out[m] = {**row, "status": "not run yet"}
            continue
        f, pts = fronts[m], points[m]
        ctrl = f.get("controllability") or {}
        row.update(
            status="ok",
            front=f["carried"]["front"]
            if "carried" in f
            else str(runs / "bench" / m / "front.json"),
            source=f.get("source"),
            settings_differ=f.get("settings_differ") or [],
            reference_point_differs=not np.allclose(f["reference_point"], ref),
            n_points=len(pts),
            points=[{"weights": p["weights"], "achieved": p["achieved"]} for p in f["points"]],
            hypervolume=hv(m),
            sparsity=sparsity(pts[pareto_mask(pts)]),
            spearman=ctrl.get("spearman_mean"),
            monotonicity=ctrl.get("monotonicity_mean"),
            eval_cpu_seconds=f.get("cpu_seconds"),
            engine=f.get("engine"),
            below_quality_bars=f["carried"]["below_quality_bars"]
            if "carried" in f
            else _below_bars(f, base_guards),
        )
        if "carried" in f:
            row["carried"] = True
        if best_ric and m not in RIC:
            row["dominated_by_ric"] = dominated_share(pts, points[best_ric])
        out[m] = row
    names = next((f["reward_names"] for f in fronts.values()), None)
    return {
        "methods": out,
        "reference_point": ref.tolist() if ref is not None else None,
        "reference_point_from": ref_from,
        "best_ric": best_ric,
        "reward_names": names,
        # The generation settings of the reference front (a reused front flags any difference).
        "settings": {k: fronts[ref_from]["settings"].get(k) for k in SAME_SETTINGS}
        if ref_from
        else None,
        "machine": read_json(runs / "bench" / "machine.json")
        if (runs / "bench" / "machine.json").exists()
        else previous.get("machine"),
        # Carried rows ran where the previous report's runs ran (kept through later carries).
        "carried_machine": (previous.get("carried_machine") or previous.get("machine"))
        if any("carried" in f for f in fronts.values())
        or any(c.get("carried") for c in costs.values())
        else None,
        "throughput": read_json(runs / "bench" / "throughput.json")
        if (runs / "bench" / "throughput.json").exists()
        else previous.get("throughput"),
        "commands": COMMANDS,
    }


def _below_bars(front: dict, base_guards: dict | None) -> dict | None:
    """{weights: [bars missed]} of a front's points (ric.evaluation.point_failures); None for
    a front without quality guards."""
    from ric.evaluation import point_failures

    if not all("guards" in p for p in front["points"]):
        return None
    return point_failures(front, base_guards)


CHEAP_ENOUGH = 0.2  # "about 10% of MORLHF's compute" counts as met up to 20%


def _compare(a: float, b: float) -> str:
    """ "HIGHER (+12.3%)", "LOWER (-4.0%)" or "EQUAL" for RiC's value a against b."""
    if np.isclose(a, b, rtol=1e-9, atol=1e-12):
        return "EQUAL"
    rel = f" ({100 * (a - b) / abs(b):+.1f}%)" if b else ""
    return ("HIGHER" if a > b else "LOWER") + rel


def verdict(summary: dict) -> list[str]:
    """Sentences comparing RiC with each baseline, computed from the numbers, whoever wins."""
    ms, best = summary["methods"], summary["best_ric"]
    if best is None:
        return ["No RiC front yet: nothing to compare."]
    r = ms[best]
    lines, wins, cost_ratio = [], {}, None
    for m in ("morlhf", "soups", "prompt_only", "base"):
        b = ms[m]
        if b["status"] != "ok":
            lines.append(f"{b['label']}: not run yet.")
            continue
        wins[m] = (
            r["hypervolume"] > b["hypervolume"]
            and _compare(r["hypervolume"], b["hypervolume"]) != "EQUAL"
        )
        text = (
            f"{r['label']} vs {b['label']}: hypervolume {r['hypervolume']:.4f} vs "
            f"{b['hypervolume']:.4f}, RiC is {_compare(r['hypervolume'], b['hypervolume'])}; "
            f"{100 * b['dominated_by_ric']:.0f}% of the {b['label']} points are dominated by "
            "RiC's front."
        )
        rc, bc = r["train_cpu_seconds"], b["train_cpu_seconds"]
        if m in ("morlhf", "soups") and rc is not None and bc:
            text += (
                f" Training cost: RiC {rc / 3600:.2f} vs {bc / 3600:.2f} CPU-hours "
                f"({100 * rc / bc:.0f}% of {b['label']})."
            )
            if m == "morlhf":
                cost_ratio = rc / bc
        lines.append(text)
    if "morlhf" in wins and "soups" in wins:
        better = wins["morlhf"] and wins["soups"]
        cheap = cost_ratio is not None and cost_ratio <= CHEAP_ENOUGH
        cost = "unknown" if cost_ratio is None else f"{100 * cost_ratio:.0f}%"
        lines.append(
            "Headline claim (fronts better than MORLHF and Rewarded Soups with ~10% of MORLHF's "
            f"compute): {'HOLDS' if better and cheap else 'DOES NOT HOLD'} on this machine. "
            f"RiC's front beats both by hypervolume: {'yes' if better else 'no'}. RiC's training "
            f"cost is {cost} of MORLHF's (counted as ~10% up to {100 * CHEAP_ENOUGH:.0f}%)."
        )
    else:
        lines.append("Headline claim: undecided until both MORLHF and Rewarded Soups have run.")
    return lines


# ---------------------------------------------------------------- report


def _f(v, nd=3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _hours(s) -> str:
    return "n/a" if s is None else f"{s / 3600:.2f} h"


def _machine_text(m: dict | None, what: str) -> str:
    if not m:
        return f"{what}: not recorded"
    return (
        f"{what}: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), Python {m['python']}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")
    )


def _settings_text(settings: dict | None) -> str:
    if not settings:
        return "Generation: ric.evaluation.EvalConfig defaults (no front yet)."
    n = settings.get("max_prompts")
    return (
        f"Prompts: {'all' if n is None else f'the first {n}'} of {settings['prompts']}; "
        f"{settings['max_new_tokens']} new tokens, temperature {settings['temperature']}, "
        f"top_p {settings['top_p']}, seed {settings['seed']} + sweep index."
    )


def markdown(summary: dict, plot: str | None) -> str:
    ms = summary["methods"]
    ref = summary["reference_point"]
    names = summary["reward_names"] or ["the RiC adapter's rewards"]
    ran = any(r["status"] == "ok" for r in ms.values())
    lines = [
        "# Benchmarks: RiC against its baselines on this machine",
        "",
        "Generated by `python bench/fronts.py --report-only` from the saved runs; every number",
        "below comes from a file under runs/ (paths in docs/benchmarks.json). Do not edit by hand.",
        "",
        *(
            []
            if ran
            else [
                "**Status: nothing has run yet.** Every table below fills in from runs/ once",
                "`bash bench/run_baselines.sh` has run; no number here is estimated or typed in.",
                "",
            ]
        ),
        "## Commands",
        "",
        *[f"- {k}: `{v}`" for k, v in COMMANDS.items()],
        "",
        _machine_text(summary["machine"], "Machine the runs ran on") + ".",
        *(
            [
                "",
                _machine_text(summary["carried_machine"], "Carried rows ran on")
                + ". CPU-seconds from two machines compare only roughly.",
            ]
            if summary.get("carried_machine") and summary["carried_machine"] != summary["machine"]
            else []
        ),
        "",
        "## Setup (the same for every method)",
        "",
        f"- Rewards: {', '.join(names)}, normalized with the RewardStats stored in the RiC adapter",
        "  (RiC's final offline stage); every method is scored by the same functions.",
        f"- {_settings_text(summary['settings'])}",
        "- Sweep: w1 in {0, 0.1, ..., 1} for RiC, Rewarded Soups and prompt-only; one point per",
        "  MORLHF run (w1 in {0, 0.25, 0.5, 0.75, 1}); the base model is one point.",
        f"- Hypervolume reference point (one for all): {ref if ref else 'set by the first front'}",
        "  (the 0.02 quantile of each normalized training reward, ric.evaluation.reference_point).",
        "- Training cost: CPU-seconds (user + system, all threads) from each run's own log.",
        "  RiC is charged every data set and SFT stage behind its adapter (its ric.json files",
        "  name the stage before); Rewarded Soups its data and ingredients. The data sets score",
        "  four rewards, not only these two. Prompt-only and base cost nothing.",
        "",
        "## Result",
        "",
        "<!-- automatically generated from the numbers below: not edited by hand -->",
        "",
        *[f"- {s}" for s in verdict(summary)],
        "",
        *(["## Why", "", summary["notes"], ""] if summary.get("notes") else []),
        "## Fronts",
        "",
        "| method | points | hypervolume | sparsity | Spearman | monotonicity "
        "| dominated by RiC | below the quality bars | engine | train CPU | eval CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ms.values():
        if r["status"] != "ok":
            lines.append(
                f"| {r['label']} | not run yet | | | | | | | | {_hours(r['train_cpu_seconds'])} | |"
            )
            continue
        differ = r["settings_differ"] + ["reference point"] * r["reference_point_differs"]
        flags = f" (own settings differ: {', '.join(differ)})" if differ else ""
        flags += " (stored)" if r.get("carried") else ""
        dom = r.get("dominated_by_ric")
        below = r.get("below_quality_bars")
        below = "n/a" if below is None else f"{len(below)} of {r['n_points']}"
        lines.append(
            f"| {r['label']}{flags} | {r['n_points']} | {_f(r['hypervolume'], 4)} "
            f"| {_f(r['sparsity'], 4)} | {_f(r['spearman'], 2)} | {_f(r['monotonicity'], 2)} "
            f"| {'' if dom is None else f'{100 * dom:.0f}%'} | {below} | {r.get('engine') or 'n/a'} "
            f"| {_hours(r['train_cpu_seconds'])} "
            f"| {_hours(r['eval_cpu_seconds'])} |"
        )
    stored = [r["label"] for r in ms.values() if r.get("carried")]
    costs = [r["label"] for r in ms.values() if r.get("train_cost_carried")]
    lines += [
        "",
        *(
            [
                "Carried from the previous report: runs/ did not hold these runs when this",
                "report was written, so these numbers are the ones the same command wrote into",
                'docs/benchmarks.json when they ran (marked "carried" there). Fronts (points to',
                f"4 decimals, metrics, quality bars): {', '.join(stored) or 'none'}, marked",
                f"(stored), not rerun. Training costs: {', '.join(costs) or 'none'}.",
                "",
            ]
            if stored or costs
            else []
        ),
        "Spearman and monotonicity: weight vs achieved reward, mean over rewards (n/a for the",
        "base model, which has no weights). Dominated by RiC: share of a method's points strictly",
        "dominated by a point of the best RiC front. Below the quality bars: sweep points that",
        "miss a bar of ric.quality.GUARD_BARS (top 3-word opening <= 20%, shared 5-word openings",
        "<= 15%, echo <= 5%, relevance >= base - 0.05, distinct-2 >= base - 0.10, the base model",
        "on the same prompts); the points and bars are in docs/benchmarks.json. Engine: what",
        "wrote the answers (ric.generation).",
        "",
    ]
    if plot:
        lines += [f"![all fronts]({plot}.png)", "", f"Interactive: [{plot}.html]({plot}.html)", ""]
    lines += ["## What each method ran", ""]
    lines += [f"- {r['label']}: {r['notes']}" for r in ms.values() if r.get("notes")]
    lines += ["", "## Training cost by part", "", "| method | part | CPU |", "|---|---|---|"]
    for r in ms.values():
        for part, s in r["train_cost_parts"].items():
            lines.append(f"| {r['label']} | {part} | {_hours(s)} |")
    lines += ["", *throughput_markdown(summary["throughput"])]
    return "\n".join(lines) + "\n"


def throughput_markdown(t: dict | None) -> list[str]:
    lines = ["## Throughput (bench/throughput.py)", ""]
    if not t or "backends" not in t:
        return [*lines, "Not run yet: `python bench/throughput.py`."]
    # bench/ is not a package: load the sibling script that owns the table.
    spec = importlib.util.spec_from_file_location(
        "bench_throughput", Path(__file__).with_name("throughput.py")
    )
    throughput = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(throughput)
    return [*lines, *throughput.table(t), "", "More in docs/ENGINES.md."]


NOTES = "benchmarks_notes.md"  # the reading of the numbers, written by people, kept in docs/


def report(runs: Path, docs: Path, ric_adapter: Path, online_adapter: Path) -> dict:
    previous = read_json(docs / "benchmarks.json") if (docs / "benchmarks.json").exists() else None
    summary = summarize(runs, ric_adapter, online_adapter, previous)
    if (docs / NOTES).exists():
        summary["notes"] = (docs / NOTES).read_text().strip()
    docs.mkdir(parents=True, exist_ok=True)
    fronts = []
    for r in summary["methods"].values():
        if r["status"] == "ok":
            # Legend names carry the hypervolume with the shared reference point.
            fronts.append(
                {
                    "reward_names": summary["reward_names"],
                    "points": r["points"],
                    "label": r["label"],
                    "hypervolume": r["hypervolume"],
                }
            )
    plot = None
    if fronts:
        from ric.plotting import save_front_figures

        save_front_figures(fronts, docs / "benchmarks_front")
        plot = "benchmarks_front"
    summary["verdict"] = verdict(summary)
    write_json(docs / "benchmarks.json", summary)
    atomic_write_text(docs / "BENCHMARKS.md", markdown(summary, plot))
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--report-only", action="store_true", help="only regenerate the docs")
    p.add_argument("--runs", default="runs", help="runs folder (see the layout above)")
    p.add_argument("--docs", default="docs", help="where BENCHMARKS.md and benchmarks.json go")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated, run in order")
    p.add_argument(
        "--ric-adapter",
        default=None,
        help="RiC's final offline stage, whose stats every method shares (default RUNS/sft/adapter)",
    )
    p.add_argument(
        "--online-adapter", default=None, help=f"RiC after MORS (default: RUNS/{ONLINE}/adapter)"
    )
    p.add_argument(
        "--shipped",
        default=None,
        help="take RiC's and the base model's fronts from this shipped folder (e.g. assets/text) "
        "when RUNS lacks them",
    )
    p.add_argument("--soups-recipe", default="train/recipes/bench_soups.yaml")
    p.add_argument("--morlhf-recipe", default="train/recipes/bench_morlhf.yaml")
    p.add_argument("--prompts", default=DEFAULT.eval_prompts)
    p.add_argument("--max-prompts", type=int, default=60)
    p.add_argument("--max-new-tokens", type=int, default=640)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument(
        "--backend",
        default="auto",
        help="engine of every method's answers (ric.models.BACKENDS), as RiC's fronts used",
    )
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        p.error(f"unknown methods {unknown}; known: {list(METHODS)}")
    args.ric_adapter = Path(args.ric_adapter or Path(args.runs) / "sft" / "adapter")
    args.online_adapter = Path(args.online_adapter or Path(args.runs) / ONLINE / "adapter")
    if not args.report_only:
        run_all(args)
    summary = report(Path(args.runs), Path(args.docs), args.ric_adapter, args.online_adapter)
    for line in summary["verdict"]:
        print(line)
    print(f"written {Path(args.docs) / 'BENCHMARKS.md'} and {Path(args.docs) / 'benchmarks.json'}")


if __name__ == "__main__":
    sys.exit(main())
