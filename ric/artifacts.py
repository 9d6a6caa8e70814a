"""Artifacts on disk: atomic writes, JSONL logs that survive a kill, and RiC metadata.

One rule for everything a kill can interrupt: a file or folder is written under a temporary
name (`.<name>.<random>.tmp`) and renamed into place, so it is either whole or absent; JSONL
logs are appended in whole lines and a torn last line is dropped on read and cut before the next
append; `clean_stale_tmp` removes what a killed writer left behind. Files get mode 0644.

Every trained artifact (adapter folder, dataset folder, evaluation folder) carries `ric.json`:
the reward names and order, the normalization statistics, the prompt format, the mapping range
and the base model, so that it can be used on its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

META_FILE = "ric.json"
FILE_MODE = 0o644  # what `open(..., "w")` gives under the usual umask; mkstemp would give 0600


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
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name and move it into place whole when the block ends
    (replacing an older one); a kill or an error leaves the old folder, or none, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if path.exists():  # rename the old one aside first: os.replace cannot replace a folder
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_stale_tmp(folder: str | Path) -> list[Path]:
    """Remove the `.*.tmp` files and folders a killed writer left anywhere under `folder`.
    Call it when a step starts, before it writes: only one writer per folder at a time."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in sorted(folder.rglob(".*.tmp"), key=lambda p: -len(p.parts)):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def append_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Append whole lines and fsync. A torn last line (a kill mid-append: a 25 KB chunk is more
    than one write) is cut off first, so new rows never glue onto a fragment."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "r+b" if path.exists() else "wb") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                f.seek(0)
                f.truncate(f.read().rfind(b"\n") + 1)
        f.seek(0, os.SEEK_END)
        f.write("".join(json.dumps(row) + "\n" for row in rows).encode())
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, FILE_MODE)


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file. A last line without its newline (torn by a kill) is dropped; a
    broken line before it is corruption, not a kill, and raises."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for k, line in enumerate(path.read_bytes().split(b"\n")[:-1], 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {k} is not JSON ({e}): the file is corrupt") from e
    return rows


CHECKPOINT_DONE = "ric_checkpoint_done"  # written into a trainer checkpoint once it is whole


def complete_checkpoints(folder: str | Path) -> list[Path]:
    """A trainer's `checkpoint-<step>` folders that were saved whole, oldest first.

    Trainers write a checkpoint file by file (weights, optimizer, RNG, trainer_state.json), so a
    kill mid-save leaves a folder that cannot be resumed from; the trainer callback in ric.sft
    marks a checkpoint done (CHECKPOINT_DONE) only after the save has finished."""
    ckpts = [p for p in Path(folder).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    done = [p for p in ckpts if (p / CHECKPOINT_DONE).exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[-1]))


def last_checkpoint(folder: str | Path) -> str | None:
    """The newest whole checkpoint to resume from, after deleting the unfinished ones."""
    done = set(complete_checkpoints(folder))
    for p in Path(folder).glob("checkpoint-*"):
        if p not in done and p.is_dir():
            shutil.rmtree(p)
    ckpts = complete_checkpoints(folder)
    return str(ckpts[-1]) if ckpts else None


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
    # name -> one line a user understands ("How cheerful the reply sounds ..."), shown under
    # its slider; names missing here fall back to ric.rewards.REWARD_DESCRIPTIONS.
    reward_descriptions: dict = field(default_factory=dict)

    def save(self, folder: str | Path) -> None:
        write_json(Path(folder) / META_FILE, asdict(self))

    @classmethod
    def load(cls, folder: str | Path) -> RicMeta:
        path = Path(folder) / META_FILE
        if not path.exists():
            raise FileNotFoundError(f"{folder} has no {META_FILE}: not a RiC artifact")
        return cls(**read_json(path))
