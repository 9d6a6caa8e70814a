"""The training loop both image backends share: a killed run resumes to the same weights as
an uninterrupted one, and a finished recipe trains nothing more."""

import pytest
import torch
from image_helpers import Killed, tiny_recipe

from ric.artifacts import read_json, read_jsonl
from ric.image.training import lr_factor, train_image_model

torch.set_num_threads(1)


def test_lr_schedule_reference_values():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)  # warmup: (step + 1) / warmup
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100) == pytest.approx(1.0)  # cosine starts at 1
    assert lr_factor(55, 10, 100) == pytest.approx(0.55)  # halfway: 0.1 + 0.9 * 0.5
    assert lr_factor(100, 10, 100) == pytest.approx(0.1)


def kill_after(last: int):
    """A training callback that kills the run once step `last` is done."""

    def kill(step, loss, module):
        if step == last:
            raise Killed

    return kill


def test_resume_after_kill(tmp_path):
    """Killed after step 3 (checkpoint at 2), rerun: same weights as the uninterrupted run."""
    straight = train_image_model(tiny_recipe(tmp_path / "straight"))
    recipe = tiny_recipe(tmp_path / "run")
    with pytest.raises(Killed):
        train_image_model(recipe, callback=kill_after(3))
    assert read_json(tmp_path / "run" / "checkpoint" / "state.json")["step"] == 2
    steps = []
    folder = train_image_model(recipe, callback=lambda s, loss, m: steps.append(s))
    assert steps == [3, 4]
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "train_log.jsonl")] == [1, 2, 3, 4]
    summary = read_json(tmp_path / "run" / "train_summary.json")
    assert summary["resumed_from"] == 2 and summary["steps_this_run"] == 2
    assert summary["train_seconds"] >= summary["wall_seconds_this_run"]
    # A rerun of the finished recipe trains nothing more.
    assert train_image_model(recipe, callback=lambda *a: steps.append(a[0])) == folder
    assert steps == [3, 4]
    from safetensors.torch import load_file

    for f in [
        "unet/diffusion_pytorch_model.safetensors",
        "conditioner.safetensors",
        "classifier/classifier.safetensors",
    ]:
        resumed, first = load_file(str(folder / f)), load_file(str(straight / f))
        assert resumed.keys() == first.keys()
        for k in first:
            torch.testing.assert_close(resumed[k], first[k], rtol=1e-5, atol=1e-6)
    model_of = lambda: read_json(folder / "ric.json")["extra"]["train"]["steps"]  # noqa: E731
    # Continued to 6 steps and killed after the last checkpoint, before the model was saved:
    # the folder still holds the 4-step model, so a rerun saves the checkpoint's weights.
    longer = tiny_recipe(tmp_path / "run", max_steps=6)
    with pytest.raises(Killed):
        train_image_model(longer, callback=kill_after(6))
    assert read_json(tmp_path / "run" / "checkpoint" / "state.json")["step"] == 6
    assert model_of() == 4
    steps.clear()
    assert train_image_model(longer, callback=lambda *a: steps.append(a[0])) == folder
    assert steps == [] and model_of() == 6
