"""RiC for images: conditioning, the embedded UNet (train, resume, generate, evaluate) and the
Stable Diffusion path on tiny components built in code (2 training steps, 2 sampling steps)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ric.diffusion
from ric.artifacts import RicMeta, read_json, read_jsonl
from ric.config import load_config
from ric.diffusion import (
    SKIMAGE_PHOTOS,
    ImageEvalConfig,
    ImageRecipe,
    RewardConditioner,
    SteerableImageModel,
    build_reward_unet,
    cfg_drop_mask,
    conditioned_caption,
    enlarge,
    evaluate_image_front,
    make_noise_scheduler,
    make_patches,
    probe_timing,
    sample_embedded,
    time_generation,
    train_image_model,
)

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "train" / "recipes"


class Killed(Exception):
    pass


def tiny_recipe(out, **kw) -> ImageRecipe:
    """The embedded backend at toy size: 16 px, 2 levels of 8/16 channels, 4 steps."""
    base = dict(
        kind="embedded",
        out_dir=str(out),
        reward_kwargs={"compressibility": {"size": None}},
        image_size=16,
        n_patches=64,
        block_out_channels=[8, 16],
        attention_levels=[False, True],
        norm_num_groups=4,
        batch_size=4,
        max_steps=4,
        save_steps=2,
        logging_steps=1,
        warmup_steps=2,
        learning_rate=1e-2,
        num_inference_steps=2,
        threads=1,
    )
    return ImageRecipe(**{**base, **kw})


# --- conditioning ---


def test_conditioned_caption():
    assert conditioned_caption("a red bus", [1.26, -0.64]) == "a red bus <rm1> 1.3 <rm2> -0.6"
    assert conditioned_caption("", [0.0, -0.04]) == "<rm1> 0.0 <rm2> 0.0"
    # A caption cannot smuggle in its own reward tags.
    text = conditioned_caption("cat <rm1> 9.9 < RM2 > 9", [0.1, 0.2])
    assert text.endswith("<rm1> 0.1 <rm2> 0.2") and text.count("<rm") == 2


def test_cfg_drop_rate():
    drop = cfg_drop_mask(20000, 0.1, np.random.default_rng(0))
    assert drop.dtype == bool and abs(drop.mean() - 0.1) < 0.01


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


# --- data ---


def test_patches_from_bundled_photos():
    a = make_patches(6, 16, seed=3)
    b = make_patches(6, 16, seed=3)
    assert a.shape == (6, 16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, make_patches(6, 16, seed=4))
    # Every listed photograph is a file inside the skimage package (no pooch download).
    from ric.diffusion import skimage_data_dir

    for file, _ in SKIMAGE_PHOTOS.values():
        assert (skimage_data_dir() / file).is_file(), file
    assert "astronaut" in SKIMAGE_PHOTOS and "brain" not in SKIMAGE_PHOTOS
    with pytest.raises(ValueError, match="not a bundled skimage photograph"):
        make_patches(1, 16, names=["brain"])


# --- recipes ---


@pytest.mark.parametrize("name", ["cpu_image.yaml", "paper_sd15.yaml"])
def test_shipped_recipes_parse(name):
    recipe = load_config(ImageRecipe, RECIPES / name)
    assert recipe.cond_dropout == 0.1 and recipe.mapping == "quantile"


def test_recipe_validation(tmp_path):
    with pytest.raises(ValueError, match="not an image reward"):
        tiny_recipe(tmp_path, rewards=["brevity", "colorfulness"])
    with pytest.raises(ValueError, match="norm_num_groups"):
        tiny_recipe(tmp_path, norm_num_groups=3)
    with pytest.raises(ValueError, match="reward_kwargs"):
        tiny_recipe(tmp_path, reward_kwargs={"sharpness": {}})


# --- the embedded backend ---


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A tiny embedded model trained for 4 steps, straight through."""
    out = tmp_path_factory.mktemp("embedded")
    return train_image_model(tiny_recipe(out))


def test_embedded_artifact(embedded):
    for f in [
        "unet/diffusion_pytorch_model.safetensors",
        "unet/config.json",
        "conditioner.safetensors",
        "scheduler/scheduler_config.json",
        "reward_stats.json",
        "ric.json",
    ]:
        assert (embedded / f).is_file(), f
    meta = RicMeta.load(embedded)
    assert meta.kind == "image" and meta.extra["backend"] == "embedded"
    assert meta.reward_names == ["compressibility", "colorfulness"]
    assert meta.conditioning["tag"] == "<rm{i}>" and meta.mapping == "quantile"
    summary = read_json(embedded.parent / "train_summary.json")
    assert summary["steps"] == 4 and summary["sample_timing"]["n_images"] == 4
    assert len(read_jsonl(embedded.parent / "train_log.jsonl")) == 4
    assert not (embedded.parent / "model.tmp").exists()


def test_embedded_resume_after_kill(embedded, tmp_path):
    """Killed after step 3 (checkpoint at 2), rerun: same weights as the uninterrupted run."""
    recipe = tiny_recipe(tmp_path / "run")

    def kill(step, loss, module):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        train_image_model(recipe, callback=kill)
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

    for f in ["unet/diffusion_pytorch_model.safetensors", "conditioner.safetensors"]:
        resumed, straight = load_file(str(folder / f)), load_file(str(embedded / f))
        assert resumed.keys() == straight.keys()
        for k in straight:
            torch.testing.assert_close(resumed[k], straight[k], rtol=1e-5, atol=1e-6)


def test_embedded_generate(embedded):
    steer = SteerableImageModel.load(embedded)
    assert steer.reward_names == ["compressibility", "colorfulness"]
    images, desired, achieved = steer.generate([0.3, 0.7], n=3, seed=5)
    assert len(images) == 3 and images[0].size == (16, 16) and images[0].mode == "RGB"
    assert desired.shape == (2,) and np.all(desired == np.round(desired, 1))
    np.testing.assert_allclose(desired, steer.desired([0.3, 0.7]))
    assert achieved.shape == (3, 2) and np.isfinite(achieved).all()
    again, _, _ = steer.generate([0.3, 0.7], n=3, seed=5)
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again, strict=True)
    )
    # Unconditioned (weights=None): the null condition, no desired rewards.
    _, none, _ = steer.generate(None, n=1)
    assert none is None
    assert enlarge(images, 64)[0].size == (64, 64)
    with pytest.raises(ValueError, match="weights"):
        steer.generate([0.5], n=1)
    with pytest.raises(ValueError, match="n must be"):
        steer.generate([0.5, 0.5], n=0)
    timing = time_generation(steer, n=2)
    assert timing["n_images"] == 2 and timing["seconds"] > 0


def test_probe_timing(tmp_path):
    probe = probe_timing(tiny_recipe(tmp_path), steps=1, n_images=2)
    assert probe["seconds_per_step"] > 0 and probe["n_images"] == 2


def test_sampling_is_batch_size_invariant(tmp_path):
    torch.manual_seed(0)
    model = build_reward_unet(tiny_recipe(tmp_path), 2).eval()
    config = dict(make_noise_scheduler().config)
    desired = np.array([0.5, -1.0])
    a = sample_embedded(model, config, desired, 3, num_inference_steps=2, seed=1, batch_size=3)
    b = sample_embedded(model, config, desired, 3, num_inference_steps=2, seed=1, batch_size=2)
    assert a.shape == (3, 16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


def test_evaluate_front(embedded, tmp_path):
    cfg = ImageEvalConfig(model=str(embedded), n_images=2, points=3, out=str(tmp_path / "ev"))
    front = evaluate_image_front(cfg)
    assert front["reward_names"] == ["compressibility", "colorfulness"]
    assert [p["weights"] for p in front["points"]] == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    for p in front["points"]:
        assert len(p["desired"]) == 2 and len(p["achieved"]) == 2
    assert len(front["reference_point"]) == 2 and front["hypervolume"] >= 0
    assert set(front["controllability"]) >= {"spearman", "monotonicity", "mae"}
    assert json.loads((tmp_path / "ev" / "front.json").read_text()) == front
    with Image.open(tmp_path / "ev" / "grid.png") as grid:
        assert grid.height == 3 * 96
    # Resuming regenerates nothing; the base sweep is one unconditioned point.
    assert len(read_jsonl(tmp_path / "ev" / "samples.jsonl")) == 6
    evaluate_image_front(cfg)
    assert len(read_jsonl(tmp_path / "ev" / "samples.jsonl")) == 6
    base = evaluate_image_front(dataclasses.replace(cfg, base=True, out=str(tmp_path / "b")))
    assert len(base["points"]) == 1 and base["points"][0]["desired"] is None
    from ric.plotting import save_front_figures

    paths = save_front_figures([front, base], tmp_path / "ev" / "front")
    assert all(p.exists() for p in paths)


# --- the Stable Diffusion backend, on tiny components ---


def build_tiny_sd(folder: Path) -> Path:
    """A StableDiffusionPipeline of width 4-32 saved in the diffusers layout (like SD v1.5)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from tokenizers import pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    # A byte-level vocabulary with no merges: every character is a token, offline.
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=32,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,  # GroupNorm groups must divide 4 and 8
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def make_caption_folder(folder: Path, n: int = 4) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        # Different sizes and contents: rewards vary, images get resized and cropped.
        img = rng.integers(0, 256, (40 + 4 * i, 36, 3), dtype=np.uint8) // (i + 1)
        Image.fromarray(img).save(folder / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "text": f"picture number {i}"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    return build_tiny_sd(root / "pipe"), make_caption_folder(root / "data")


def sd_recipe(out, pipe, data, **kw) -> ImageRecipe:
    base = dict(
        kind="sd",
        out_dir=str(out),
        pretrained_model=str(pipe),
        train_data=str(data),
        rewards=["colorfulness", "compressibility"],
        resolution=32,
        batch_size=2,
        max_steps=2,
        save_steps=1,
        warmup_steps=1,
        lora_r=4,
        lora_alpha=4,
        num_inference_steps=2,
        guidance_scale=7.5,
        threads=1,
    )
    return ImageRecipe(**{**base, **kw})


def test_sd_lora_two_steps(tiny_sd, tmp_path, monkeypatch):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    pipe_dir, data = tiny_sd
    seen, captions = {}, []

    def spy(caption, rewards, fmt=None):
        captions.append(conditioned_caption(caption, rewards, fmt))
        return captions[-1]

    monkeypatch.setattr(ric.diffusion, "conditioned_caption", spy)
    folder = train_image_model(
        sd_recipe(tmp_path / "run", pipe_dir, data),
        callback=lambda step, loss, unet: seen.update(unet=unet, loss=loss),
    )
    monkeypatch.undo()
    assert np.isfinite(seen["loss"])
    # The text encoder saw caption + tags: "picture number 2 <rm1> 0.4 <rm2> -1.1".
    assert captions and all(
        re.fullmatch(r"picture number \d <rm1> -?\d+\.\d <rm2> -?\d+\.\d", c) for c in captions
    )
    # The saved LoRA file holds LoRA weights only.
    lora = load_file(str(folder / "pytorch_lora_weights.safetensors"))
    assert lora and all("lora" in k for k in lora)
    # The adapter trained (B starts at zero), the base UNet did not move.
    trained = seen["unet"].state_dict()
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in trained.items())
    base = UNet2DConditionModel.from_pretrained(pipe_dir, subfolder="unet").state_dict()
    for k, v in base.items():
        key = (
            k
            if k in trained
            else k.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        )
        torch.testing.assert_close(trained[key], v, rtol=0, atol=0)
    meta = RicMeta.load(folder)
    assert meta.kind == "image" and meta.extra["backend"] == "sd"
    assert meta.base_model == str(pipe_dir) and meta.extra["finetune"] == "lora"
    assert len(read_jsonl(tmp_path / "run" / "scores.jsonl")) == 4

    # Conditioned generation through StableDiffusionPipeline with the LoRA loaded.
    steer = SteerableImageModel.load(folder)
    assert any("lora" in name for name, _ in steer.backend.pipe.unet.named_parameters())
    images, desired, achieved = steer.generate([0.2, 0.8], n=2, prompt="a cat", seed=0)
    assert len(images) == 2 and images[0].size == (32, 32)
    assert desired.shape == (2,) and achieved.shape == (2, 2)
    base_model = SteerableImageModel.load(folder, base=True)
    _, none, _ = base_model.generate([0.2, 0.8], n=1, prompt="a cat")
    assert none is None


def test_sd_full_finetune(tiny_sd, tmp_path):
    pipe_dir, data = tiny_sd
    folder = train_image_model(
        sd_recipe(tmp_path / "full", pipe_dir, data, finetune="full", max_steps=1)
    )
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not (folder / "pytorch_lora_weights.safetensors").exists()
    images, _, _ = SteerableImageModel.load(folder).generate([1.0, 0.0], n=1, prompt="x")
    assert images[0].size == (32, 32)


def test_sd_loads_from_safetensors_only(tiny_sd, tmp_path):
    """The same pipeline with its UNet saved as a pickle (.bin) is refused, not unpickled."""
    import shutil

    from diffusers import UNet2DConditionModel

    pipe_dir, _ = tiny_sd
    meta = RicMeta(str(pipe_dir), ["a", "b"], {}, {}, kind="image", extra={"backend": "sd"})
    ric.diffusion._SDBackend(tmp_path, meta, torch.device("cpu"), base=True)  # loads

    pickled = tmp_path / "pickled"
    shutil.copytree(pipe_dir, pickled)
    unet = UNet2DConditionModel.from_pretrained(pickled / "unet")
    shutil.rmtree(pickled / "unet")
    unet.save_pretrained(pickled / "unet", safe_serialization=False)
    assert (pickled / "unet" / "diffusion_pytorch_model.bin").exists()
    meta.base_model = str(pickled)
    with pytest.raises(RuntimeError, match="from safetensors"):
        ric.diffusion._SDBackend(tmp_path, meta, torch.device("cpu"), base=True)
    with pytest.raises(RuntimeError, match="safetensors"):
        ric.diffusion.load_sd_components(str(pickled))
