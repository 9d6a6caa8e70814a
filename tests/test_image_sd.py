"""The Stable Diffusion backend on tiny components built in code (2 training steps, 2 sampling
steps): caption + reward tags into the text encoder, LoRA or full UNet fine-tuning, safetensors
only."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import re

import numpy as np
import pytest
import torch
from image_helpers import build_tiny_sd, make_caption_folder, sd_recipe

import ric.image.sd
from ric.artifacts import RicMeta, read_jsonl
from ric.image.recipe import conditioned_caption
from ric.image.sampling import SteerableImageModel
from ric.image.training import train_image_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    return build_tiny_sd(root / "pipe"), make_caption_folder(root / "data")


def test_sd_lora_two_steps(tiny_sd, tmp_path, monkeypatch):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    pipe_dir, data = tiny_sd
    seen, captions = {}, []

    def spy(caption, rewards, fmt=None):
        captions.append(conditioned_caption(caption, rewards, fmt))
        return captions[-1]

    monkeypatch.setattr(ric.image.sd, "conditioned_caption", spy)
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
    ric.image.sd.SDBackend(tmp_path, meta, torch.device("cpu"), base=True)  # loads

    pickled = tmp_path / "pickled"
    shutil.copytree(pipe_dir, pickled)
    unet = UNet2DConditionModel.from_pretrained(pickled / "unet")
    shutil.rmtree(pickled / "unet")
    unet.save_pretrained(pickled / "unet", safe_serialization=False)
    assert (pickled / "unet" / "diffusion_pytorch_model.bin").exists()
    meta.base_model = str(pickled)
    with pytest.raises(RuntimeError, match="from safetensors"):
        ric.image.sd.SDBackend(tmp_path, meta, torch.device("cpu"), base=True)
    with pytest.raises(RuntimeError, match="safetensors"):
        ric.image.sd.load_sd_components(str(pickled))
