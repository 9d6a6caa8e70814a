"""Run logs: cost summed over every attempt of a step, killed ones too."""

import json
import subprocess
import sys
import time

from ric.runlog import COST_FILE, RunClock, clock_total, machine_info


def test_run_clock_sums_attempts_and_counts_each_once(tmp_path):
    first = RunClock(tmp_path, every=0)
    t = time.time()
    while time.time() - t < 0.3:  # burn CPU time
        pass
    a = first.tick()
    first.tick()  # a later tick of the same attempt replaces its figure, it does not add
    assert a["attempts"] == 1 and clock_total(tmp_path)["cpu_seconds"] >= a["cpu_seconds"] > 0
    second = RunClock(tmp_path, every=0)
    total = second.stop()
    assert total["attempts"] == 2
    rows = [json.loads(x) for x in (tmp_path / COST_FILE).read_text().splitlines()]
    assert total["cpu_seconds"] == round(
        sum(max(r["cpu"] for r in rows if r["attempt"] == k) for k in {r["attempt"] for r in rows}),
        1,
    )


def test_a_killed_attempt_still_counts_up_to_its_last_tick(tmp_path):
    code = (
        "import os, time, sys; from ric.runlog import RunClock;"
        f"c = RunClock({str(tmp_path)!r}, every=0.2);"
        "t = time.time()\nwhile time.time() - t < 1.0: pass\nos._exit(9)"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    killed = clock_total(tmp_path)
    assert killed["attempts"] == 1 and killed["wall_seconds"] >= 0.6 and killed["cpu_seconds"] > 0
    assert RunClock(tmp_path, every=0).stop()["cpu_seconds"] >= killed["cpu_seconds"]


def test_machine_info_names_the_threads():
    m = machine_info()
    assert m["cores"] >= 1 and m["torch_threads"] >= 1 and m["torch"]


def test_lineage_charges_a_copied_data_set_once(tmp_path):
    from ric.artifacts import RicMeta, write_json
    from ric.runlog import lineage_cpu_seconds

    def stage(name, data, init=None):
        out = tmp_path / name
        recipe = {"out_dir": str(out), "data_dir": str(data), "init_adapter": init}
        RicMeta("m", ["a"], {}, {}, extra={"recipe": recipe}).save(out / "adapter")
        write_json(out / "train_log.json", {"cpu_seconds": 5.0})
        return str(out / "adapter")

    for d, cpu in (("data", 100.0), ("copy", 100.0), ("other", 7.0)):
        write_json(tmp_path / d / "data.json", {"cpu_seconds": cpu, "made_by": "x"})
    first = stage("sft", tmp_path / "data")
    parts = lineage_cpu_seconds(stage("online", tmp_path / "copy", init=first))
    assert parts == {
        f"data {tmp_path / 'data'}": 100.0,
        f"SFT {tmp_path / 'sft'}": 5.0,
        f"SFT {tmp_path / 'online'}": 5.0,
    }
    parts = lineage_cpu_seconds(stage("more", tmp_path / "other", init=first))
    assert parts[f"data {tmp_path / 'other'}"] == 7.0 and len(parts) == 4


def test_a_paused_clock_leaves_out_what_runs_inside(tmp_path):
    clock = RunClock(tmp_path / "a", every=0)
    with clock.paused():
        t = time.time()
        while time.time() - t < 0.4:  # a sub-step with its own log
            pass
        inside = clock.tick()  # a tick while paused records the time before the pause
    total = clock.stop()
    assert inside["cpu_seconds"] < 0.1 and total["cpu_seconds"] < 0.1
    assert total["wall_seconds"] < 0.2


def test_lineage_charges_the_soft_targets_of_a_data_set_once(tmp_path):
    from ric.artifacts import RicMeta, write_json, write_jsonl
    from ric.runlog import lineage_cpu_seconds

    data = tmp_path / "data"
    write_json(data / "data.json", {"cpu_seconds": 100.0})
    write_jsonl(data / "instruction_k32" / COST_FILE, [{"attempt": "1", "wall": 9, "cpu": 17.0}])
    init = None
    for name in ("sft", "more"):  # two stages on the same data and targets
        out = tmp_path / name
        recipe = {"out_dir": str(out), "data_dir": str(data), "init_adapter": init}
        recipe.update(targets="instruction", target_k=32)
        RicMeta("m", ["a"], {}, {}, extra={"recipe": recipe}).save(out / "adapter")
        write_json(out / "train_log.json", {"cpu_seconds": 5.0})
        init = str(out / "adapter")
    parts = lineage_cpu_seconds(init)
    assert parts == {
        f"data {data}": 100.0,
        f"targets {data / 'instruction_k32'}": 17.0,
        f"SFT {tmp_path / 'sft'}": 5.0,
        f"SFT {tmp_path / 'more'}": 5.0,
    }
