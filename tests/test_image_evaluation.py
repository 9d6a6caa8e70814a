"""The image preference sweep: front.json through ric.evaluation's aggregation, per-subject
figures, resume, the caption-only reference point, grids."""

import dataclasses
import json

import pytest
import torch
from image_helpers import SUBJECTS, tiny_recipe
from PIL import Image

from ric.artifacts import read_jsonl
from ric.evaluation import REFERENCE_QUANTILE
from ric.image.evaluation import ImageEvalConfig, evaluate_image_front, save_subject_grid
from ric.image.sampling import SteerableImageModel
from ric.image.training import train_image_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    return train_image_model(tiny_recipe(tmp_path_factory.mktemp("embedded")))


def test_evaluate_front(embedded, tmp_path):
    cfg = ImageEvalConfig(model=str(embedded), n_images=2, points=3, out=str(tmp_path / "ev"))
    front = evaluate_image_front(cfg)
    assert front["reward_names"] == ["compliance", "aesthetic_composite"]
    assert [p["weights"] for p in front["points"]] == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    for p in front["points"]:
        assert len(p["desired"]) == 2 and len(p["achieved"]) == 2
    # ric.evaluation's reference point: each reward's 0.02 training quantile.
    steer = SteerableImageModel.load(embedded)
    ref = steer.stats.quantile(REFERENCE_QUANTILE).round(3).tolist()
    assert front["reference_point"] == ref and front["hypervolume"] >= 0
    assert set(front["controllability"]) >= {"spearman", "monotonicity", "mae"}
    assert json.loads((tmp_path / "ev" / "front.json").read_text()) == front
    assert front["model_train"]["steps"] == 4  # which model was measured (tiny_recipe's)
    # Per subject: one entry per weight, the classifier's naming rate a share.
    assert list(front["per_subject"]) == SUBJECTS
    for per in front["per_subject"].values():
        assert [p["weights"] for p in per] == [p["weights"] for p in front["points"]]
        assert all(0 <= p["named_rate"] <= 1 for p in per)
    rows = read_jsonl(tmp_path / "ev" / "samples.jsonl")
    assert len(rows) == 3 * 2 * 2  # weights x subjects x images
    assert {r["prompt"] for r in rows} == set(SUBJECTS)
    conflict = front["reward_conflict_generated"]
    assert -1 <= conflict["spearman"] <= 1 and "spearman_within_subject_mean" in conflict
    with Image.open(tmp_path / "ev" / "grid.png") as grid:
        assert grid.height == 3 * 96
    # A prompted sweep also draws one row per subject at both ends and the middle.
    with Image.open(tmp_path / "ev" / "subjects.png") as im:
        assert im.height == 16 + len(SUBJECTS) * 64 and im.width == 90 + 3 * (4 * 64 + 8)
    # Resuming regenerates nothing.
    evaluate_image_front(cfg)
    assert len(read_jsonl(tmp_path / "ev" / "samples.jsonl")) == 12
    # The reference: the caption alone, one point without desired rewards.
    base = evaluate_image_front(dataclasses.replace(cfg, base=True, out=str(tmp_path / "b")))
    assert len(base["points"]) == 1 and base["points"][0]["desired"] is None
    assert base["label"] == "caption only (no reward tags)"
    path = save_subject_grid(tmp_path / "ev", tmp_path / "subjects.png", [[1.0, 0.0], [0.0, 1.0]])
    with Image.open(path) as im:
        assert im.height == 16 + 2 * 64
    from ric.plotting import save_front_figures

    paths = save_front_figures([front, base], tmp_path / "ev" / "front")
    assert all(p.exists() for p in paths)


def test_settings_change_is_refused(embedded, tmp_path):
    cfg = ImageEvalConfig(model=str(embedded), n_images=1, points=2, out=str(tmp_path / "ev"))
    evaluate_image_front(cfg)
    with pytest.raises(ValueError, match="other settings"):
        evaluate_image_front(dataclasses.replace(cfg, n_images=2))
