"""Tiny image models built in code for the image tests (and tests/test_app_image.py)."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ric.image.recipe import ImageRecipe

SUBJECTS = ["cat", "moon"]


class Killed(Exception):
    pass


def tiny_recipe(out, **kw) -> ImageRecipe:
    """The prompted embedded backend at toy size: 2 subjects, 16 px, 2 levels of 8/16
    channels, 4 steps, a classifier trained for 2 steps."""
    base = dict(
        kind="embedded",
        out_dir=str(out),
        subjects=SUBJECTS,
        reward_dropout=0.1,
        image_size=16,
        n_patches=64,
        classifier_patches=64,
        classifier_steps=2,
        classifier_min_crop=0.5,
        vivid_share=0.5,
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
