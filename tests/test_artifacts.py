"""Files a kill can interrupt: JSONL with a torn tail, atomic files and folders, checkpoints."""

import json
import os
import stat

import pytest

from ric.artifacts import (
    CHECKPOINT_DONE,
    append_jsonl,
    atomic_dir,
    clean_stale_tmp,
    last_checkpoint,
    read_jsonl,
    write_json,
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_torn_tail_is_dropped_on_read_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, [{"k": i} for i in range(3)])
    with open(path, "a") as f:  # a kill in the middle of a larger append
        f.write(json.dumps({"k": 3, "pad": "x" * 5000})[:100])
    assert read_jsonl(path) == [{"k": 0}, {"k": 1}, {"k": 2}]
    append_jsonl(path, [{"k": 3}, {"k": 4}])
    assert read_jsonl(path) == [{"k": i} for i in range(5)]  # nothing lost, nothing doubled
    assert path.read_text().count("\n") == 5


def test_a_broken_line_inside_the_file_is_an_error_not_a_silent_stop(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"k": 0}\n{"k": \n{"k": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(path)


def test_written_and_appended_files_get_the_same_mode(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    append_jsonl(tmp_path / "b.jsonl", [{"x": 1}])
    assert _mode(tmp_path / "a.json") == _mode(tmp_path / "b.jsonl") == 0o644


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "w.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "w.txt").write_text("half")
        raise RuntimeError("killed mid-save")
    assert (target / "w.txt").read_text() == "one"
    with atomic_dir(target) as tmp:
        (tmp / "w.txt").write_text("two")
    assert (target / "w.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temp left


def test_stale_temp_files_and_folders_are_cleaned(tmp_path):
    (tmp_path / ".reward_stats.json.abc.tmp").write_text("{")
    (tmp_path / "sub" / ".adapter.x.tmp").mkdir(parents=True)
    (tmp_path / "keep.json").write_text("{}")
    assert len(clean_stale_tmp(tmp_path)) == 2
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "keep.json",
        "sub",
    ]


def test_last_checkpoint_skips_and_removes_unfinished_ones(tmp_path):
    for step, done in [(2, True), (4, True), (6, False)]:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text("{}")
        if done:
            (folder / CHECKPOINT_DONE).write_text(f"{step}\n")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert not (tmp_path / "checkpoint-6").exists()
    assert last_checkpoint(tmp_path / "none") is None
