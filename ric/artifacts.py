"""Artifacts on disk: atomic writes, JSONL logs that survive a kill, and RiC metadata.

Every trained artifact (adapter folder, dataset folder, evaluation folder) carries `ric.json`:
the reward names and order, the normalization statistics, the prompt format, the mapping range
and the base model, so that it can be used on its own.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

META_FILE = "ric.json"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a file so that a reader (or a killed writer) never sees it half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def append_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Append rows and fsync: a kill loses at most the batch being written, never earlier rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; a torn last line (from a kill mid-write) is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


@dataclass
class RicMeta:
    """What a RiC artifact needs to be used on its own (saved as `ric.json`)."""

    base_model: str
    reward_names: list[str]
    stats: dict  # RewardStats.to_dict()
    conditioning: dict  # ConditioningFormat.to_dict()
    mapping: str = "ric"
    kind: str = "text"  # "text" | "image"
    extra: dict = field(default_factory=dict)

    def save(self, folder: str | Path) -> None:
        write_json(Path(folder) / META_FILE, asdict(self))

    @classmethod
    def load(cls, folder: str | Path) -> RicMeta:
        path = Path(folder) / META_FILE
        if not path.exists():
            raise FileNotFoundError(f"{folder} has no {META_FILE}: not a RiC artifact")
        return cls(**read_json(path))
