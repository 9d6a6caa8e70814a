"""What a run records about itself: command line, CPU and wall time, machine, lineage.

Every figure of cost in the docs comes from here: `RunClock` sums the wall and CPU seconds of
every attempt of a resumable step (killed ones too) in the step's `cost.jsonl`, and
`lineage_cpu_seconds` sums the steps behind an adapter from their own logs.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ric.artifacts import RicMeta, append_jsonl, read_json, read_jsonl

COST_FILE = "cost.jsonl"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: the cost figure benchmarks report."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def command_line() -> str:
    """How this process was started, recorded in every log so a figure names its command
    (quoted for a shell: `--label "RiC + MORS"` stays one argument)."""
    return shlex.join(["python", *sys.argv])


def set_threads_from_env() -> int:
    """torch threads = OMP_NUM_THREADS when set (the rebuild runs on one core of a shared
    machine); returns the count in use."""
    import torch

    n = os.environ.get("OMP_NUM_THREADS")
    if n and n.isdigit() and int(n) > 0:
        torch.set_num_threads(int(n))
    return torch.get_num_threads()


def machine_info() -> dict:
    """What a benchmark number needs next to it: CPU model, cores, threads, library versions."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


class RunClock:
    """Wall and CPU seconds of a resumable step, summed over all its attempts.

    Each attempt (one process) appends its running totals to FOLDER/cost.jsonl at every `tick`
    and, from a background thread, every `every` seconds; the step's cost is the sum over
    attempts of each attempt's last line. A killed attempt therefore still counts up to its
    last tick (at most `every` seconds are lost), and nothing is counted twice.
    """

    def __init__(self, folder: str | Path, every: float = 30.0):
        self.path = Path(folder) / COST_FILE
        self.attempt = f"{os.getpid()}-{time.time():.3f}"
        self.t0, self.c0 = time.time(), cpu_seconds()
        self._stop, self._lock = threading.Event(), threading.Lock()
        self._paused_at: tuple[float, float] | None = None
        if every:
            threading.Thread(target=self._loop, args=(every,), daemon=True).start()

    def _loop(self, every: float) -> None:
        while not self._stop.wait(every):
            self.tick()

    def tick(self) -> dict:
        """Record this attempt's cost so far; returns the step's total over all attempts."""
        with self._lock:
            now, cpu = self._paused_at or (time.time(), cpu_seconds())
            row = {
                "attempt": self.attempt,
                "wall": round(now - self.t0, 3),
                "cpu": round(cpu - self.c0, 3),
            }
            append_jsonl(self.path, [row])
            return self.total()

    def stop(self) -> dict:
        self._stop.set()
        return self.tick()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave out what runs inside: a sub-step that keeps its own cost log (the sampler
        targets an SFT builds once for its data set) is then charged once, there."""
        with self._lock:
            self._paused_at = (time.time(), cpu_seconds())
        try:
            yield
        finally:
            with self._lock:
                t, c = self._paused_at
                self.t0 += time.time() - t
                self.c0 += cpu_seconds() - c
                self._paused_at = None

    def total(self) -> dict:
        return clock_total(self.path.parent)


def clock_total(folder: str | Path) -> dict:
    """{"wall_seconds", "cpu_seconds", "attempts"} summed from FOLDER/cost.jsonl."""
    last: dict[str, dict] = {}
    for row in read_jsonl(Path(folder) / COST_FILE):
        last[row["attempt"]] = row
    return {
        "wall_seconds": round(sum(r["wall"] for r in last.values()), 1),
        "cpu_seconds": round(sum(r["cpu"] for r in last.values()), 1),
        "attempts": len(last),
    }


def logged_cpu_seconds(path: Path) -> float | None:
    """The cpu_seconds a run's own log (data.json, train_log.json, mors.json) recorded."""
    return read_json(path).get("cpu_seconds") if path.exists() else None


def adapter_lineage(adapter: str | Path, partial: bool = False) -> list[dict]:
    """Every training stage behind an adapter, oldest first, from the recipes its ric.json
    files record (each stage's init_adapter names the one before): [{"adapter", "out_dir",
    "data_dir", "targets_dir"}] (targets_dir: the soft targets it trained on, or None). A MORS
    iteration's stage sits in iter_<k>/sft next to its mors.json. Costs and data of a
    multi-stage model are summed over this chain, so nothing is counted twice and no stage is
    forgotten. partial: stop at the first adapter that is gone (a fresh checkout keeps only the
    shipped copy), marking it {"adapter", "missing": True}, instead of raising."""
    from ric.distill import targets_folder

    chain, seen, current = [], set(), str(adapter)
    while current:
        key = str(Path(current).resolve())
        if key in seen:
            raise ValueError(f"adapter lineage loops at {current}")
        seen.add(key)
        if partial and not (Path(current) / "ric.json").exists():
            chain.append({"adapter": current, "missing": True})
            break
        recipe = RicMeta.load(current).extra.get("recipe", {})
        targets = recipe.get("targets", "tokens")
        chain.append(
            {
                "adapter": current,
                "out_dir": recipe.get("out_dir", str(Path(current).parent)),
                "data_dir": recipe.get("data_dir"),
                # soft targets (ric.distill) are built once per data set, with their own log
                "targets_dir": str(
                    targets_folder(recipe["data_dir"], targets, recipe.get("target_k", 32))
                )
                if targets != "tokens" and recipe.get("data_dir")
                else None,
            }
        )
        current = recipe.get("init_adapter")
    return chain[::-1]


def lineage_cpu_seconds(adapter: str | Path, partial: bool = False) -> dict:
    """{part: CPU-seconds} for every data set and stage behind `adapter`, from their own logs
    (None where a log is missing): each data set once, each SFT stage, each MORS sampling.
    A data set is known by its data.json's bytes as well as its path: a copied folder (the
    same data under another name) is charged once, and so are the soft targets built for it
    (ric.distill; None when their folder has no cost log). partial: a missing adapter
    (adapter_lineage, the oldest stage found) is the part "missing <adapter>": None."""
    parts: dict[str, float | None] = {}
    seen_data: set = set()
    for stage in adapter_lineage(adapter, partial):
        if stage.get("missing"):
            parts[f"missing {stage['adapter']}"] = None
            continue
        data = stage["data_dir"]
        log = Path(data) / "data.json" if data else None
        key = log.read_bytes() if log and log.exists() else data
        if data and key not in seen_data:
            seen_data.add(key)
            parts[f"data {data}"] = logged_cpu_seconds(log)
        targets = stage["targets_dir"]
        if targets and (key, Path(targets).name) not in seen_data:
            seen_data.add((key, Path(targets).name))
            cost = Path(targets) / COST_FILE
            parts[f"targets {targets}"] = (
                clock_total(targets)["cpu_seconds"] if cost.exists() else None
            )
        out = Path(stage["out_dir"])
        mors = out.parent / "mors.json"
        if mors.exists():
            parts[f"MORS {out.parent}"] = logged_cpu_seconds(mors)
        parts[f"SFT {out}"] = logged_cpu_seconds(out / "train_log.json")
    return parts
