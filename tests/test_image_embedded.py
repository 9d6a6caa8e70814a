"""The embedded backend: the prompted reward conditioner, sampling, the trained artifact (with
its classifier) and generation through SteerableImageModel."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from image_helpers import SUBJECTS, tiny_recipe

from ric.artifacts import RicMeta, read_json, read_jsonl
from ric.image.embedded import (
    RewardConditioner,
    build_reward_unet,
    make_noise_scheduler,
    probe_timing,
    sample_embedded,
)
from ric.image.sampling import SteerableImageModel, enlarge, time_generation
from ric.image.training import train_image_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A tiny prompted embedded model trained for 4 steps, straight through."""
    return train_image_model(tiny_recipe(tmp_path_factory.mktemp("embedded")))


def test_conditioner_null_ignores_rewards():
    cond = RewardConditioner(2, 16)
    torch.nn.init.normal_(cond.net[2].weight)  # as after training: not the zero init
    r = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    null = torch.tensor([True, True])
    a, b = cond(r, null)
    assert torch.allclose(a, b)
    c, d = cond(r, ~null)
    assert not torch.allclose(c, d)
    # Zero-initialized output layer: a fresh conditioner leaves the UNet unconditional.
    assert torch.count_nonzero(RewardConditioner(2, 16)(r, ~null)) == 0


def test_conditioner_subject_embedding():
    cond = RewardConditioner(2, 16, n_subjects=3)
    r, null = torch.zeros(4, 2), torch.ones(4, dtype=torch.bool)
    emb = cond(r, null, torch.tensor([0, 1, 3, 3]))
    assert not torch.allclose(emb[0], emb[1])  # subjects differ
    torch.testing.assert_close(emb[2], emb[3])
    # No subject given = index n_subjects, "no caption".
    torch.testing.assert_close(cond(r, null)[0], emb[2])


def test_sampling_is_batch_size_invariant(tmp_path):
    torch.manual_seed(0)
    model = build_reward_unet(tiny_recipe(tmp_path), 2).eval()
    config = dict(make_noise_scheduler().config)
    desired = np.array([0.5, -1.0])
    subjects = [0, 1, 2]
    a = sample_embedded(model, config, desired, 3, 3.0, 2, 1, 3, subjects=subjects)
    b = sample_embedded(model, config, desired, 3, 3.0, 2, 1, 2, subjects=subjects)
    assert a.shape == (3, 16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


def test_reward_guidance_equal_to_guidance_is_plain_cfg(tmp_path):
    """eps_null + g (eps_caption - eps_null) + g (eps_cond - eps_caption) = plain CFG."""
    torch.manual_seed(0)
    model = build_reward_unet(tiny_recipe(tmp_path), 2).eval()
    torch.nn.init.normal_(model.conditioner.net[2].weight)  # rewards matter, as after training
    config = dict(make_noise_scheduler().config)
    desired, subjects = np.array([0.5, -1.0]), [0, 1]
    plain = sample_embedded(model, config, desired, 2, 3.0, 2, 1, 2, subjects=subjects)
    same = sample_embedded(
        model, config, desired, 2, 3.0, 2, 1, 2, subjects=subjects, reward_guidance=3.0
    )
    np.testing.assert_allclose(plain.astype(int), same.astype(int), atol=1)  # float rounding
    other = sample_embedded(
        model, config, desired, 2, 3.0, 2, 1, 2, subjects=subjects, reward_guidance=0.0
    )
    assert not np.array_equal(plain, other)


def test_embedded_artifact(embedded):
    for f in [
        "unet/diffusion_pytorch_model.safetensors",
        "unet/config.json",
        "conditioner.safetensors",
        "scheduler/scheduler_config.json",
        "classifier/classifier.safetensors",
        "classifier/classifier.json",
        "reward_stats.json",
        "ric.json",
    ]:
        assert (embedded / f).is_file(), f
    meta = RicMeta.load(embedded)
    assert meta.kind == "image" and meta.extra["backend"] == "embedded"
    assert meta.reward_names == ["compliance", "aesthetic_composite"]
    assert meta.extra["subjects"] == SUBJECTS
    assert meta.extra["classifier"]["subjects"] == SUBJECTS
    assert 0 <= meta.extra["classifier"]["test_accuracy"] <= 1
    assert meta.extra["classifier"]["min_crop"] == 0.5  # the recipe's classifier_min_crop
    assert meta.conditioning["tag"] == "<rm{i}>" and meta.mapping == "quantile"
    summary = read_json(embedded.parent / "train_summary.json")
    assert summary["steps"] == 4 and summary["sample_timing"]["n_images"] == 4
    assert -1 <= summary["reward_conflict_training"]["spearman"] <= 1
    conflict = summary["reward_conflict_training"]
    assert len(conflict["spearman_within_subject"]) == len(SUBJECTS)
    assert conflict["spearman_within_subject_mean"] == pytest.approx(
        np.nanmean(conflict["spearman_within_subject"]), abs=1e-3
    )
    assert len(read_jsonl(embedded.parent / "train_log.jsonl")) == 4
    assert not (embedded.parent / "model.tmp").exists()


def test_embedded_generate(embedded):
    steer = SteerableImageModel.load(embedded)
    assert steer.reward_names == ["compliance", "aesthetic_composite"]
    assert steer.subjects == SUBJECTS
    images, desired, achieved = steer.generate([0.3, 0.7], n=3, seed=5, prompt="a cat")
    assert len(images) == 3 and images[0].size == (16, 16) and images[0].mode == "RGB"
    assert desired.shape == (2,) and np.all(desired == np.round(desired, 1))
    np.testing.assert_allclose(desired, steer.desired([0.3, 0.7]))
    assert achieved.shape == (3, 2) and np.isfinite(achieved).all()
    again, _, _ = steer.generate([0.3, 0.7], n=3, seed=5, prompt="a cat")
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again, strict=True)
    )
    # The prompt steers the sample: same seed and weights, another subject, other pixels.
    moon, _, _ = steer.generate([0.3, 0.7], n=3, seed=5, prompt="the moon")
    assert not np.array_equal(np.asarray(images[0]), np.asarray(moon[0]))
    # weights=None: the caption alone, no desired rewards.
    _, none, _ = steer.generate(None, n=1, prompt="cat")
    assert none is None
    assert enlarge(images, 64)[0].size == (64, 64)
    with pytest.raises(ValueError, match="names none of this model's subjects: cat, moon"):
        steer.generate([0.5, 0.5], n=1, prompt="a dog")
    with pytest.raises(ValueError, match="weights"):
        steer.generate([0.5], n=1, prompt="cat")
    with pytest.raises(ValueError, match="n must be"):
        steer.generate([0.5, 0.5], n=0, prompt="cat")
    steer.set_reward_guidance(2.0)
    guided, _, _ = steer.generate([0.3, 0.7], n=3, seed=5, prompt="a cat")
    assert len(guided) == 3
    steer.set_reward_guidance(None)
    timing = time_generation(steer, n=2)
    assert timing["n_images"] == 2 and timing["seconds"] > 0


def test_compliance_reads_the_prompt(embedded):
    """The same images score differently under another caption (two subjects: the log-odds
    of one are minus those of the other)."""
    steer = SteerableImageModel.load(embedded)
    images, _, _ = steer.generate([1.0, 0.0], n=2, seed=0, prompt="cat")
    fn = steer._rewards[0]
    cat, moon = fn(["cat"] * 2, images), fn(["moon"] * 2, images)
    np.testing.assert_allclose(cat, -moon, rtol=1e-6, atol=1e-6)


def test_probe_timing(tmp_path):
    probe = probe_timing(tiny_recipe(tmp_path), steps=1, n_images=2)
    assert probe["seconds_per_step"] > 0 and probe["n_images"] == 2
