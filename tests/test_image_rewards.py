"""Image rewards (ric.image.rewards): fn(prompts, images) -> float64 array, checked on
constructed images; the old names stay importable from ric.rewards."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

import numpy as np
import pytest
from PIL import Image

from ric.image.rewards import (
    COMPOSITE_SCALES,
    aesthetic_composite,
    compliance,
    contrast,
    model_reward_kwargs,
)
from ric.image.rewards import (
    REWARDS as IMAGE_ONLY,
)
from ric.rewards import (
    IMAGE_REWARDS,
    REWARDS,
    aesthetic,
    aesthetic_mlp,
    colorfulness,
    compressibility,
    get_reward_fn,
    is_image_reward,
    sharpness,
)

OFFLINE = ["compressibility", "colorfulness", "sharpness", "contrast", "aesthetic_composite"]


def flat(value=128, size=32):
    return np.full((size, size, 3), value, dtype=np.uint8)


def noise(size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def rainbow(size=32):
    hue = np.linspace(0, 1, size, endpoint=False)
    rgb = np.stack([np.abs(hue * 6 - 3) - 1, 2 - np.abs(hue * 6 - 2), 2 - np.abs(hue * 6 - 4)])
    row = (np.clip(rgb, 0, 1).T * 255).round().astype(np.uint8)  # (size, 3)
    return np.repeat(row[None], size, axis=0)


def checkerboard(size=32, cell=2):
    idx = (np.arange(size) // cell) % 2
    board = (idx[:, None] ^ idx[None, :]).astype(np.uint8) * 255
    return np.repeat(board[:, :, None], 3, axis=2)


def blurred(img, radius=2.0):
    from PIL import ImageFilter

    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))


def test_registry():
    assert IMAGE_REWARDS is IMAGE_ONLY  # moved to ric.image.rewards, same registry
    assert set(IMAGE_REWARDS) == {
        "compressibility",
        "colorfulness",
        "sharpness",
        "contrast",
        "aesthetic_composite",
        "compliance",
        "aesthetic",
    }
    assert set(IMAGE_REWARDS) <= set(REWARDS)
    assert is_image_reward("colorfulness") and not is_image_reward("brevity")
    assert get_reward_fn("compressibility", size=64) is get_reward_fn("compressibility", size=64)


@pytest.mark.parametrize("name", OFFLINE)
def test_dtype_shape_and_empty_batch(name):
    fn = get_reward_fn(name)
    out = fn(["", "a caption", ""], [flat(), noise(), rainbow()])
    assert out.dtype == np.float64 and out.shape == (3,) and np.isfinite(out).all()
    empty = fn([], [])
    assert empty.dtype == np.float64 and empty.shape == (0,)


@pytest.mark.parametrize("name", OFFLINE)
def test_pil_and_array_agree(name):
    fn = get_reward_fn(name)
    imgs = [noise(seed=1), rainbow()]
    as_pil = fn(["", ""], [Image.fromarray(i) for i in imgs])
    np.testing.assert_allclose(as_pil, fn(["", ""], imgs))
    # A grey PIL image is converted to RGB, not rejected.
    grey = Image.fromarray(np.full((16, 16), 70, np.uint8), mode="L")
    np.testing.assert_allclose(fn([""], [grey]), fn([""], [flat(70, 16)]))


@pytest.mark.parametrize("name", OFFLINE)
def test_bad_input(name):
    fn = get_reward_fn(name)
    with pytest.raises(ValueError, match="same length"):
        fn(["a", "b"], [flat()])
    with pytest.raises(ValueError, match="images must be a list"):
        fn(["a"], flat())
    with pytest.raises(ValueError, match="prompts must be a list of str"):
        fn("a", [flat()])
    with pytest.raises(ValueError, match=r"images\[0\] must be an HxWx3 uint8 array, got float64"):
        fn([""], [flat().astype(float)])
    with pytest.raises(ValueError, match=r"images\[1\] must be an HxWx3 uint8 array"):
        fn(["", ""], [flat(), np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match=r"images\[0\] must be a PIL image.*got str"):
        fn([""], ["image.png"])


def test_compressibility_flat_beats_noise():
    for size in (None, 64, 512):
        fn = compressibility(size=size)
        flat_score, noise_score = fn(["", ""], [flat(), noise()])
        assert flat_score > noise_score
        assert flat_score < 0  # minus a size in kB
    # At 512 x 512 (the paper's setting) 32 px noise becomes tens of kB.
    assert compressibility()([""], [noise()])[0] < -10
    with pytest.raises(ValueError, match="size"):
        compressibility(size=0)
    with pytest.raises(ValueError, match="quality"):
        compressibility(quality=101)


def test_colorfulness_reference_values():
    fn = colorfulness()
    # Two pixels, pure red and pure blue: rg = (255, 0), yb = (127.5, -255).
    img = np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    expected = math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, -63.75)
    assert fn([""], [img])[0] == pytest.approx(expected)
    grey, rainbow_score = fn(["", ""], [flat(90), rainbow()])
    assert grey == 0.0
    assert rainbow_score > 50


def test_sharpness_blur_is_less_sharp():
    fn = sharpness()
    board = checkerboard()
    sharp, soft, still = fn(["", "", ""], [board, blurred(board), flat()])
    assert sharp > soft > still == 0.0
    raw = sharpness(log=False)([""], [board])[0]
    assert sharp == pytest.approx(math.log1p(raw))


def test_aesthetic_needs_weights():
    with pytest.raises(RuntimeError, match="aesthetic.*mlp_weights"):
        aesthetic()
    with pytest.raises(RuntimeError, match="neither a file nor such a hub spec"):
        aesthetic(mlp_weights="no/such-file")


def test_aesthetic_needs_clip(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "mlp.safetensors"
    save_file(aesthetic_mlp(768).state_dict(), str(path))
    with pytest.raises(RuntimeError, match="CLIP model 'no/such-clip'"):
        aesthetic(mlp_weights=str(path), clip_model="no/such-clip")


def test_aesthetic_head_on_tiny_clip(tmp_path):
    """The full scoring path on a CLIP of width 16 and an MLP with random weights."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=100,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
        ),
        vision_config=dict(
            image_size=32,
            patch_size=8,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
        ),
        projection_dim=8,
    )
    clip_dir = tmp_path / "clip"
    CLIPModel(config).save_pretrained(clip_dir)
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(clip_dir)
    mlp = aesthetic_mlp(8).eval()
    save_file(mlp.state_dict(), str(tmp_path / "mlp.safetensors"))

    fn = aesthetic(mlp_weights=str(tmp_path / "mlp.safetensors"), clip_model=str(clip_dir))
    imgs = [noise(40), rainbow(), flat()]
    out = fn(["a", "b", "c"], imgs)
    assert out.dtype == np.float64 and out.shape == (3,)

    # The same numbers by hand: unit-norm projected image embedding through the MLP.
    clip = CLIPModel.from_pretrained(clip_dir).eval()
    with torch.no_grad():
        pixels = processor(images=imgs, return_tensors="pt")["pixel_values"]
        emb = clip.get_image_features(pixel_values=pixels).pooler_output
        expected = mlp(emb / emb.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_contrast_reference_values():
    half = np.zeros((8, 8, 3), np.uint8)
    half[:4] = 255  # luma 0 or 255 in equal parts: std 127.5
    np.testing.assert_allclose(contrast()(["", ""], [flat(), half]), [0.0, 127.5])


def test_aesthetic_composite_is_its_documented_mean():
    images = [flat(), rainbow(), checkerboard(), noise()]
    prompts = [""] * len(images)
    parts = [
        sharpness()(prompts, images) / COMPOSITE_SCALES["sharpness"],
        contrast()(prompts, images) / COMPOSITE_SCALES["contrast"],
        colorfulness()(prompts, images) / COMPOSITE_SCALES["colorfulness"],
    ]
    got = aesthetic_composite()(prompts, images)
    np.testing.assert_allclose(got, np.mean(parts, axis=0))
    assert got[0] == 0.0  # flat grey: no edges, no contrast, no colour
    # Blur lowers it; colour raises it.
    assert aesthetic_composite()([""] * 2, [rainbow(), blurred(rainbow(), 3)])[1] < got[1]
    grey = np.repeat(rainbow().mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    assert aesthetic_composite()([""], [grey])[0] < got[1]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    import torch

    from ric.image.classifier import train_classifier

    torch.set_num_threads(1)
    clf, report = train_classifier(["cat", "moon"], size=8, n_patches=256, steps=40, seed=0)
    folder = tmp_path_factory.mktemp("clf")
    clf.save(folder, report)
    return folder


def test_compliance_is_the_log_odds_of_the_named_subject(classifier):
    from ric.image.classifier import SubjectClassifier
    from ric.image.data import subject_patches
    from ric.image.rewards import COMPLIANCE_CLIP

    patches, labels = subject_patches(40, 8, 7, ["cat", "moon"], min_crop=0.5)
    fn = compliance(str(classifier))
    right = fn(["a cat" if y == 0 else "the moon" for y in labels], list(patches))
    wrong = fn(["the moon" if y == 0 else "a cat" for y in labels], list(patches))
    assert right.dtype == np.float64 and (right > 0).mean() >= 0.9
    # Reference: log(p / (1 - p)) from the classifier's probabilities, clipped.
    p = SubjectClassifier.load(classifier).probabilities(list(patches))[np.arange(40), labels]
    expected = np.clip(np.log(p / (1 - p)), -COMPLIANCE_CLIP, COMPLIANCE_CLIP)
    np.testing.assert_allclose(right, expected, rtol=1e-4, atol=1e-4)
    # Two subjects: the other caption's log-odds are the negation.
    np.testing.assert_allclose(wrong, -right, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="name none of the subjects"):
        fn(["a dog"], [patches[0]])
    with pytest.raises(ValueError, match="needs classifier"):
        compliance()


def test_model_reward_kwargs_point_into_the_model_folder():
    got = model_reward_kwargs(
        ["compliance", "compressibility"], {"compressibility": {"size": 9}}, "m"
    )
    assert got == {"compressibility": {"size": 9}, "compliance": {"classifier": "m/classifier"}}
    assert model_reward_kwargs(["compressibility"], {}, "m") == {}
