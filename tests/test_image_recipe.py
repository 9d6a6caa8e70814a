"""The image recipe and the RiC conditioning of images: caption + tags, dropout, validation,
the backend registry, and every shipped image recipe parses."""

from pathlib import Path

import numpy as np
import pytest
from image_helpers import tiny_recipe

from ric.config import load_config
from ric.image.backends import BACKENDS
from ric.image.recipe import ImageRecipe, cfg_drop_mask, conditioned_caption, drop_masks

RECIPES = Path(__file__).resolve().parents[1] / "train" / "recipes"


def test_conditioned_caption():
    assert conditioned_caption("a red bus", [1.26, -0.64]) == "a red bus <rm1> 1.3 <rm2> -0.6"
    assert conditioned_caption("", [0.0, -0.04]) == "<rm1> 0.0 <rm2> 0.0"
    # A caption cannot smuggle in its own reward tags.
    text = conditioned_caption("cat <rm1> 9.9 < RM2 > 9", [0.1, 0.2])
    assert text.endswith("<rm1> 0.1 <rm2> 0.2") and text.count("<rm") == 2


def test_cfg_drop_rate():
    drop = cfg_drop_mask(20000, 0.1, np.random.default_rng(0))
    assert drop.dtype == bool and abs(drop.mean() - 0.1) < 0.01


def test_drop_masks_are_disjoint_with_their_rates():
    drop_all, drop_r = drop_masks(20000, 0.1, 0.1, np.random.default_rng(0))
    assert not (drop_all & drop_r).any()
    assert abs(drop_all.mean() - 0.1) < 0.01 and abs(drop_r.mean() - 0.1) < 0.01
    # Without reward-only dropout the masks are the paper's, draw for draw.
    paper, none = drop_masks(100, 0.1, 0.0, np.random.default_rng(3))
    np.testing.assert_array_equal(paper, cfg_drop_mask(100, 0.1, np.random.default_rng(3)))
    assert not none.any()


@pytest.mark.parametrize("name", ["cpu_image.yaml", "paper_sd15.yaml"])
def test_shipped_recipes_parse(name):
    recipe = load_config(ImageRecipe, RECIPES / name)
    # The paper's SD recipe keeps the released quantile mapping; the embedded default ships
    # with "ric" over a range per reward (docs/IMAGE.md: a zero aesthetic weight asking for the
    # dullest patch cost the images their subject).
    assert recipe.cond_dropout == 0.1
    assert recipe.mapping == ("quantile" if recipe.kind == "sd" else "ric")
    assert recipe.kind in BACKENDS


def test_cpu_recipe_is_prompted():
    recipe = load_config(ImageRecipe, RECIPES / "cpu_image.yaml")
    assert recipe.rewards == ["compliance", "aesthetic_composite"]
    assert len(recipe.subjects) == 8 and recipe.threads == 1
    assert recipe.classifier_min_crop > recipe.min_crop  # close-ups score low on compliance
    assert 0 < recipe.vivid_share < 1 and recipe.mapping == "ric"


def test_recipe_validation(tmp_path):
    with pytest.raises(ValueError, match="not an image reward"):
        tiny_recipe(tmp_path, rewards=["brevity", "colorfulness"])
    with pytest.raises(ValueError, match="norm_num_groups"):
        tiny_recipe(tmp_path, norm_num_groups=3)
    with pytest.raises(ValueError, match="reward_kwargs"):
        tiny_recipe(tmp_path, reward_kwargs={"sharpness": {}})
    with pytest.raises(ValueError, match="kind must be one of"):
        tiny_recipe(tmp_path, kind="gan")
    with pytest.raises(ValueError, match="unknown subjects"):
        tiny_recipe(tmp_path, subjects=["cat", "unicorn"])
    with pytest.raises(ValueError, match="list >= 2 subjects"):
        tiny_recipe(tmp_path, subjects=[])
    with pytest.raises(ValueError, match="must be < 1"):
        tiny_recipe(tmp_path, cond_dropout=0.5, reward_dropout=0.5)
    with pytest.raises(ValueError, match="classifier_min_crop is a fraction"):
        tiny_recipe(tmp_path, classifier_min_crop=2.0)
    with pytest.raises(ValueError, match="vivid_share must be in"):
        tiny_recipe(tmp_path, vivid_share=-0.1)


def test_backends_registry():
    assert set(BACKENDS) == {"embedded", "sd"}
    for backend in BACKENDS.values():
        assert callable(backend.train) and callable(backend.images)
