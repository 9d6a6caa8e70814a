"""bench/fronts.py --report-only on fake runs, bench/throughput.py on a tiny model, the recipes."""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ric.artifacts import RicMeta, write_json
from ric.baselines import MorlhfRecipe, SoupsRecipe
from ric.config import load_config
from ric.mapping import simplex_grid
from ric.pareto import hypervolume
from ric.sft import SFTRecipe

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["positivity", "brevity"]
REF = [-2.0, -2.0]
SETTINGS = {
    "prompts": "assets/prompts/eval.txt",
    "max_prompts": 100,
    "max_new_tokens": 64,
    "temperature": 0.7,
    "top_p": 0.9,
    "seed": 0,
}


def _load(name: str):
    """bench/ holds scripts, not a package: load one as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fronts = _load("fronts")


def _front(label, achieved, weights=None, **kw):
    weights = weights if weights is not None else simplex_grid(2, len(achieved)).tolist()
    return {
        "label": label,
        "reward_names": NAMES,
        "reference_point": REF,
        "hypervolume": 0.0,
        "points": [
            {"weights": w, "desired": None if w is None else [0.0, 0.0], "achieved": a}
            for w, a in zip(weights, achieved, strict=True)
        ],
        "settings": SETTINGS,
        "cpu_seconds": 100.0,
        **(
            {"controllability": {"spearman_mean": 0.9, "monotonicity_mean": 1.0}}
            if weights[0]
            else {}
        ),
        **kw,
    }


def _line(lo, hi, k):
    """k points on the segment from (lo, hi) to (hi, lo): a front."""
    t = np.linspace(0, 1, k)[:, None]
    return ((1 - t) * np.array([lo, hi]) + t * np.array([hi, lo])).round(4).tolist()


def _stage(adapter: Path, data_dir: Path, init: Path | None = None, cpu: float = 0.0) -> Path:
    """A trained stage as the lineage sees it: ric.json naming its data and predecessor."""
    recipe = {"data_dir": str(data_dir), "out_dir": str(adapter.parent), "init_adapter": None}
    if init is not None:
        recipe["init_adapter"] = str(init)
    RicMeta("tiny", NAMES, {}, {}, extra={"recipe": recipe}).save(adapter)
    write_json(adapter.parent / "train_log.json", {"cpu_seconds": cpu})
    return adapter


def fake_runs(root: Path, ric_level: float) -> Path:
    """RiC's and the baselines' logs and fronts; MORLHF's front sits at level 1.0. RiC has two
    offline stages on two data sets and one MORS iteration, like the embedded default."""
    runs = root / "runs"
    write_json(runs / "data" / "data.json", {"cpu_seconds": 1000.0})
    write_json(runs / "data_primed" / "data.json", {"cpu_seconds": 500.0})
    sft = _stage(runs / "sft0" / "adapter", runs / "data", cpu=2000.0)
    sft4 = _stage(runs / "sft" / "adapter", runs / "data_primed", sft, cpu=700.0)
    write_json(runs / "online" / "iter_1" / "mors.json", {"cpu_seconds": 300.0})
    it = _stage(runs / "online" / "iter_1" / "sft" / "adapter", runs / "data_primed", sft4, 400.0)
    shutil.copytree(it, runs / "online2" / "adapter")  # as train/online.py ships the last one
    for name, cpu in (("positivity", 500.0), ("brevity", 600.0)):
        _stage(runs / "bench" / "soups" / name / "adapter", runs / "data_primed", cpu=cpu)
    for w in simplex_grid(2, 5):
        run = f"w{w[0]:.2f}_{w[1]:.2f}"
        write_json(runs / "bench" / "morlhf" / run / "train_log.json", {"cpu_seconds": 10000.0})
    bench = runs / "bench"
    write_json(bench / "ric_offline" / "front.json", _front("RiC", _line(-1, ric_level, 11)))
    write_json(bench / "ric_online" / "front.json", _front("RiC+", _line(-1, ric_level - 0.1, 11)))
    soups = _front("soups", _line(-1, 0.5, 11), engine="onnx int8")
    ok = {"top_opening_share": 0.1, "shared_opening_share": 0.0, "echo_rate": 0.0}
    ok.update(relevance=0.6, distinct_2=0.8)
    for k, point in enumerate(soups["points"]):  # the last point opens half its replies alike
        point["guards"] = {**ok, "top_opening_share": 0.5} if k == 10 else ok
    write_json(bench / "soups" / "front.json", soups)
    write_json(bench / "morlhf" / "front.json", _front("morlhf", _line(-1, 1.0, 5)))
    write_json(bench / "prompt_only" / "front.json", _front("prompt", _line(-1.5, 0, 11)))
    # the base model has not run: its row must say so
    write_json(
        bench / "machine.json",
        {
            "cpu": "Test CPU",
            "cores": 2,
            "torch_threads": 2,
            "python": "3.11",
            "torch": "2.x",
            "gpu": None,
        },
    )
    return runs


@pytest.mark.parametrize("ric_level, holds", [(0.5, False), (1.5, True)])
def test_report_only_from_fake_runs(tmp_path, ric_level, holds):
    runs = fake_runs(tmp_path, ric_level)
    docs = tmp_path / "docs"
    fronts.main(["--report-only", "--runs", str(runs), "--docs", str(docs)])
    md = (docs / "BENCHMARKS.md").read_text()
    out = json.loads((docs / "benchmarks.json").read_text())
    assert (docs / "benchmarks_front.png").exists() and (docs / "benchmarks_front.html").exists()

    m = out["methods"]
    assert out["reference_point"] == REF and out["best_ric"] == "ric_offline"
    # every data set and stage behind each adapter, each once
    assert m["ric_offline"]["train_cpu_seconds"] == 1000 + 500 + 2000 + 700
    assert m["ric_online"]["train_cpu_seconds"] == 4200 + 300 + 400
    assert m["soups"]["train_cpu_seconds"] == 500 + 500 + 600
    assert "2 stage(s)" in m["ric_offline"]["notes"] and "kept" in m["ric_online"]["notes"]
    assert m["morlhf"]["train_cpu_seconds"] == 50000.0
    assert m["prompt_only"]["train_cpu_seconds"] == 0.0
    assert m["base"]["status"] == "not run yet"
    expected = hypervolume(np.array(_line(-1, 1.0, 5)), REF)
    assert m["morlhf"]["hypervolume"] == pytest.approx(expected)
    assert m["morlhf"]["spearman"] == 0.9 and m["morlhf"]["n_points"] == 5

    assert "python bench/fronts.py --report-only" in md and "Test CPU" in md
    assert "| base model | not run yet |" in md
    soups_row = next(line for line in md.splitlines() if line.startswith("| Rewarded Soups |"))
    assert "| 1 of 11 | onnx int8 |" in soups_row
    assert m["soups"]["below_quality_bars"] == {"[1.0, 0.0]": ["top_opening_share 0.500 > 0.20"]}
    assert m["morlhf"]["below_quality_bars"] is None  # a front without guards
    assert "automatically generated" in md
    if holds:
        assert "HOLDS on this machine" in md and "RiC is HIGHER" in md
        assert "(8% of MORLHF (GRPO))" in md  # 4200 / 50000 CPU-seconds
    else:
        assert "DOES NOT HOLD" in md and "RiC is LOWER (-22.9%)" in md
        assert "vs Rewarded Soups: hypervolume 5.0125 vs 5.0125, RiC is EQUAL" in md
    assert out["verdict"] and all(s in md for s in out["verdict"])
    assert "## Why" not in md  # no notes written yet
    (docs / fronts.NOTES).write_text("Soups steer evenly because ...\n")
    fronts.main(["--report-only", "--runs", str(runs), "--docs", str(docs)])
    assert "## Why\n\nSoups steer evenly because ...\n" in (docs / "BENCHMARKS.md").read_text()


def test_report_carries_what_runs_lack(tmp_path):
    """A fresh clone has docs/benchmarks.json but not runs/: a new MORLHF run is reported beside
    the stored rows and costs, each marked, with the stored hypervolumes unchanged."""
    runs = fake_runs(tmp_path, 1.5)
    docs = tmp_path / "docs"
    fronts.main(["--report-only", "--runs", str(runs), "--docs", str(docs)])
    before = json.loads((docs / "benchmarks.json").read_text())["methods"]

    fresh = tmp_path / "fresh"  # only the MORLHF runs, now at a lower level
    shutil.copytree(runs / "bench" / "morlhf", fresh / "bench" / "morlhf")
    write_json(fresh / "bench" / "morlhf" / "front.json", _front("morlhf", _line(-1, 0.8, 5)))
    # the shipped adapter names stages that are not there
    shipped = shutil.copytree(runs / "online2" / "adapter", tmp_path / "shipped" / "adapter")
    shutil.rmtree(runs)
    ric = ["--ric-adapter", str(shipped), "--online-adapter", str(shipped)]
    fronts.main(["--report-only", "--runs", str(fresh), "--docs", str(docs), *ric])
    out = json.loads((docs / "benchmarks.json").read_text())
    m, md = out["methods"], (docs / "BENCHMARKS.md").read_text()
    for k in ("ric_offline", "ric_online", "soups", "prompt_only"):
        assert m[k]["carried"] and m[k]["status"] == "ok", k
        for key in ("hypervolume", "points", "spearman", "below_quality_bars", "train_cpu_seconds"):
            assert m[k][key] == before[k][key], (k, key)
    assert m["soups"]["train_cost_carried"] and "train_cost_carried" not in m["morlhf"]
    assert m["prompt_only"]["notes"] == before["prompt_only"]["notes"]  # a carried front's note
    assert "carried" not in m["morlhf"] and m["morlhf"]["hypervolume"] == pytest.approx(
        hypervolume(np.array(_line(-1, 0.8, 5)), REF)
    )
    assert m["base"]["status"] == "not run yet"  # it never ran: nothing to carry
    assert out["reference_point"] == REF and out["best_ric"] == "ric_offline"
    assert (
        "| Rewarded Soups (stored) | 11 |" in md
        and "(stored), not rerun. Training costs: RiC (offline)" in md
    )
    assert "(8% of MORLHF (GRPO))" in md  # RiC's carried cost against the new runs' 50,000 s
    # Carrying again changes nothing.
    fronts.main(["--report-only", "--runs", str(fresh), "--docs", str(docs), *ric])
    assert json.loads((docs / "benchmarks.json").read_text()) == out

    # A second MORS iteration on a copy of the shipped adapter, in this checkout, on its data
    # regenerated: the iteration's own costs are added to the stored ones, the data is not
    # charged again, and a further report adds nothing.
    write_json(fresh / "data" / "data.json", {"cpu_seconds": 999.0})
    copy = shutil.copytree(shipped, fresh / "online" / "adapter")
    write_json(fresh / "online2" / "iter_1" / "mors.json", {"cpu_seconds": 30.0})
    it2 = _stage(fresh / "online2" / "iter_1" / "sft" / "adapter", fresh / "data", copy, 40.0)
    on2 = ["--ric-adapter", str(shipped), "--online-adapter", str(it2)]
    fronts.main(["--report-only", "--runs", str(fresh), "--docs", str(docs), *on2])
    m2 = json.loads((docs / "benchmarks.json").read_text())["methods"]["ric_online"]
    assert m2["train_cpu_seconds"] == before["ric_online"]["train_cpu_seconds"] + 70.0
    new_parts = set(m2["train_cost_parts"]) - set(before["ric_online"]["train_cost_parts"])
    assert new_parts == {f"MORS {fresh / 'online2' / 'iter_1'}", f"SFT {it2.parent}"}
    assert m2["train_cost_carried"] and "then, in this checkout" in m2["notes"]
    again = json.loads((docs / "benchmarks.json").read_text())
    fronts.main(["--report-only", "--runs", str(fresh), "--docs", str(docs), *on2])
    assert json.loads((docs / "benchmarks.json").read_text()) == again


def test_report_on_nothing_says_not_run(tmp_path):
    docs = tmp_path / "docs"
    fronts.main(["--report-only", "--runs", str(tmp_path / "none"), "--docs", str(docs)])
    md = (docs / "BENCHMARKS.md").read_text()
    assert md.count("not run yet") >= 6 and "No RiC front yet" in md


def test_reused_front_is_copied_and_checked(tmp_path):
    runs = tmp_path / "runs"
    write_json(
        runs / fronts.REUSED["ric_offline"] / "front.json",
        _front("RiC", _line(-1, 1, 11), settings={**SETTINGS, "max_prompts": 10}),
    )
    args = fronts.argparse.Namespace(
        runs=str(runs),
        prompts=SETTINGS["prompts"],
        max_prompts=100,
        max_new_tokens=64,
        batch_size=48,
        dtype="bfloat16",
        backend="auto",
        ric_adapter=runs / "sft" / "adapter",
        online_adapter=runs / "online2" / "adapter",
    )
    fronts.run_method("ric_offline", args, meta=None)
    copied = json.loads((runs / "bench" / "ric_offline" / "front.json").read_text())
    assert copied["source"].endswith(f"{fronts.REUSED['ric_offline']}/front.json")
    assert copied["settings_differ"] == ["max_prompts"] and copied["label"] == "RiC (offline)"
    # Without the rebuild's front, the shipped copy serves, only when asked for.
    assert fronts.reused_front(runs, "ric_online") is None
    shipped = tmp_path / "assets_text"
    write_json(shipped / "front.json", _front("RiC+", _line(-1, 1, 11)))
    args.shipped = shipped
    fronts.run_method("ric_online", args, meta=None)
    copied = json.loads((runs / "bench" / "ric_online" / "front.json").read_text())
    assert copied["source"] == str(shipped / "front.json") and copied["settings_differ"] == []
    assert fronts.reused_front(runs, "ric_offline", shipped).parent.name == "eval_sft"


def test_throughput_smoke_and_report(tmp_path, tiny_model_dir):
    """Both engines measured in one run, in the documented format, and reported."""
    throughput = _load("throughput")
    out = tmp_path / "runs" / "bench" / "throughput.json"
    throughput.main(
        ["--model", str(tiny_model_dir), "--n", "4", "--out", str(out), "--threads", "1"]
        + ["--rewards", "positivity,brevity", "--max-new-tokens", "8", "--decode-tokens", "8"]
        + ["--repeats", "1", "--bw-mb", "16", "--dtype", "float32", "--batch-size", "2"]
    )
    t = json.loads(out.read_text())
    assert t["threads"] == 1 and t["bandwidth_gb_s"] > 0
    assert set(t["backends"]) == {"transformers", "onnx"}
    for r in t["backends"].values():
        assert r["decode_tok_s"] > 0 and r["first_token_ms"] > 0 and r["batched_tok_s"] > 0
        assert r["bound_fraction"] == pytest.approx(r["decode_tok_s"] / r["bound_tok_s"])
    # The transformers copy is float32: 4 bytes a weight. The int8 export reads about a
    # quarter of that per token (plus scales and float32 norms).
    tb, ob = (t["backends"][k]["bytes_per_token"] for k in ("transformers", "onnx"))
    assert tb % 4 == 0 and ob < tb
    docs = tmp_path / "docs"
    throughput.main(["--report-only", "--runs", str(tmp_path / "runs"), "--docs", str(docs)])
    engines = (docs / "ENGINES.md").read_text()
    assert "| onnx |" in engines and "Not run yet: `python bench/load.py" in engines
    fronts.main(["--report-only", "--runs", str(tmp_path / "runs"), "--docs", str(docs)])
    assert "| transformers |" in (docs / "BENCHMARKS.md").read_text()


def test_bench_recipes_parse():
    soups = load_config(SoupsRecipe, ROOT / "train" / "recipes" / "bench_soups.yaml")
    SFTRecipe(**soups.sft)  # every ingredient override is an SFTRecipe field
    morlhf = load_config(MorlhfRecipe, ROOT / "train" / "recipes" / "bench_morlhf.yaml")
    assert soups.rewards == morlhf.rewards
    assert np.allclose(morlhf.weights, simplex_grid(2, len(morlhf.weights)))
    assert morlhf.batch_size % morlhf.num_generations == 0


def test_a_raised_morlhf_budget_makes_its_front_stale(tmp_path):
    recipe = load_config(MorlhfRecipe, ROOT / "train" / "recipes" / "bench_morlhf.yaml")
    state = ("front.json", "samples.jsonl", "sweep.json")  # the evaluation resumes from these
    for name in state:
        (tmp_path / name).write_text("{}")
    write_json(tmp_path / "w0.00_1.00" / "train_log.json", {"steps": recipe.max_steps})
    assert fronts.drop_stale_morlhf_front(tmp_path, recipe) == []
    assert all((tmp_path / name).exists() for name in state)
    write_json(tmp_path / "w1.00_0.00" / "train_log.json", {"steps": recipe.max_steps - 13})
    assert fronts.drop_stale_morlhf_front(tmp_path, recipe) == ["w1.00_0.00"]
    assert not any((tmp_path / name).exists() for name in state)


def test_the_online_front_is_the_shipped_stage_s(tmp_path):
    """bench compares the MORS stage that shipped, as the shipped front records it."""
    shipped = json.loads((ROOT / "assets" / "text" / "front.json").read_text())
    assert f"runs/{fronts.ONLINE}/adapter" == shipped["settings"]["adapter"]
    # The shipped range's front, not the stage's own at the range chosen on training prompts.
    assert f"runs/{fronts.REUSED['ric_online']}" == shipped["settings"]["out"]
    write_json(tmp_path / "front.json", {"settings": {"adapter": "runs/online4/adapter"}})
    assert fronts.shipped_stage(tmp_path) == ("online4", "eval_online4")
    settings = {"adapter": "runs/online4/adapter", "out": "runs/eval_online4_hand"}
    write_json(tmp_path / "front.json", {"settings": settings})
    assert fronts.shipped_stage(tmp_path) == ("online4", "eval_online4_hand")
    with pytest.raises(FileNotFoundError, match="no shipped text default"):
        fronts.shipped_stage(tmp_path / "nothing")


def test_run_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "bench" / "run_baselines.sh")], check=True)


def test_fronts_runs_every_method_on_a_tiny_model(tmp_path, tiny_model_dir):
    """The whole orchestration, 2 training steps per run: soups, MORLHF, prompt-only, base."""
    import yaml
    from conftest import make_tiny_adapter

    from ric.artifacts import RicMeta, read_jsonl, write_jsonl
    from ric.baselines import shared_stats

    runs = tmp_path / "runs"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello there\nmy dog died\nhow are you today\n")
    rng = np.random.default_rng(0)
    rows = [
        {
            "key": f"{k}",
            "prompt": "hello there",
            "response": "i feel great",
            "raw": rng.normal(size=2).tolist(),
        }
        for k in range(16)
    ]
    write_jsonl(runs / "data" / "dataset.jsonl", rows)
    write_json(runs / "data" / "data.json", {"reward_names": NAMES, "cpu_seconds": 5.0})
    adapter = make_tiny_adapter(runs / "sft" / "adapter", tiny_model_dir)
    meta = RicMeta.load(adapter)  # the shared statistics: those of runs/data
    meta.stats = shared_stats(read_jsonl(runs / "data" / "dataset.jsonl"), NAMES).to_dict()
    meta.save(adapter)
    tiny = {
        "lora_r": 2,
        "lora_alpha": 4,
        "batch_size": 4,
        "max_steps": 2,
        "save_steps": 2,
        "learning_rate": 1e-2,
        "max_length": 64,
    }
    soups = tmp_path / "soups.yaml"
    soups.write_text(yaml.safe_dump({"model": str(tiny_model_dir), "rewards": NAMES, "sft": tiny}))
    morlhf = tmp_path / "morlhf.yaml"
    morlhf.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model_dir),
                "prompts": str(prompts),
                "rewards": NAMES,
                "max_steps": 2,
                "num_generations": 2,
                "batch_size": 4,
                "max_completion_length": 4,
                "lora_r": 2,
                "lora_alpha": 4,
                "save_steps": 2,
            }
        )
    )
    args = [
        "--runs",
        str(runs),
        "--docs",
        str(tmp_path / "docs"),
        "--prompts",
        str(prompts),
        "--max-prompts",
        "2",
        "--max-new-tokens",
        "3",
        "--batch-size",
        "4",
        "--dtype",
        "float32",
        # the onnx path of each baseline is tested in test_baselines.py; here, the orchestration
        "--backend",
        "transformers",
        "--soups-recipe",
        str(soups),
        "--morlhf-recipe",
        str(morlhf),
        "--ric-adapter",
        str(adapter),
    ]
    fronts.main(args)
    out = json.loads((tmp_path / "docs" / "benchmarks.json").read_text())["methods"]
    assert out["ric_online"]["status"] == "not run yet"
    for m, n in (
        ("ric_offline", 11),
        ("soups", 11),
        ("morlhf", 5),
        ("prompt_only", 11),
        ("base", 1),
    ):
        assert out[m]["status"] == "ok" and out[m]["n_points"] == n, m
        assert out[m]["engine"] == "transformers float32", m
        assert isinstance(out[m]["below_quality_bars"], dict), m
    assert out["soups"]["train_cpu_seconds"] > 5.0 and out["morlhf"]["train_cpu_seconds"] > 0
    assert len(list((runs / "bench" / "morlhf").glob("w*/adapter/adapter_model.safetensors"))) == 5
    # A second run finds everything done and changes nothing.
    before = (runs / "bench" / "soups" / "front.json").read_text()
    fronts.main(args)
    assert (runs / "bench" / "soups" / "front.json").read_text() == before
    # MORLHF needs only the adapter's statistics: without the data (a fresh clone) its finished
    # runs are evaluated again; the soups, which train on the rows, refuse.
    shutil.rmtree(runs / "data")
    (runs / "bench" / "morlhf" / "front.json").unlink()
    fronts.main([*args, "--methods", "morlhf"])
    assert json.loads((runs / "bench" / "morlhf" / "front.json").read_text())["points"]
    (runs / "bench" / "soups" / "front.json").unlink()
    with pytest.raises(FileNotFoundError):
        fronts.main([*args, "--methods", "soups"])


def test_load_bench_smoke(tmp_path, tiny_adapter_dir):
    """bench/load.py starts the app, runs concurrent users, stops it, writes the interface."""
    load = _load("load")
    out = tmp_path / "load.json"
    load.main(
        ["--users", "3", "--tokens", "4", "--repeats", "1", "--adapter", str(tiny_adapter_dir)]
        + ["--out", str(out), "--start-timeout", "240"]
    )
    r = json.loads(out.read_text())
    assert r["users"] == 3 and r["errors"] == 0, r["error_samples"]
    assert r["single_s"] > 0 and 0 < r["p50_s"] <= r["p95_s"] <= r["last_s"] + 1e-6


def test_fidelity_smoke(tmp_path, tiny_adapter_dir):
    """bench/fidelity.py on the tiny adapter: fp32 export identical to transformers fp32."""
    fidelity = _load("fidelity")
    out = tmp_path / "runs" / "bench" / "fidelity.json"
    fidelity.main(
        ["--adapter", str(tiny_adapter_dir), "--n-greedy", "3", "--n-front", "2", "--points", "2"]
        + ["--max-new-tokens", "4", "--n-ends", "2", "--ends-tokens", "4", "--out", str(out)]
    )
    r = json.loads(out.read_text())
    assert r["greedy"]["identical"]["onnx-fp32"] == 3
    gap = r["front"]["vs_reference"]["onnx-fp32"]
    assert gap["max_abs_gap"] == pytest.approx(0, abs=1e-6)
    assert set(r["ends"]) == {"transformers:float32", "transformers:bfloat16", "onnx", "onnx-fp32"}
    docs = tmp_path / "docs"
    _load("throughput").main(
        ["--report-only", "--runs", str(tmp_path / "runs"), "--docs", str(docs)]
    )
    assert "end by themselves" in (docs / "ENGINES.md").read_text()
