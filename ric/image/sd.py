"""The Stable Diffusion backend: the paper's setting (docs/METHOD.md section 7).

The caption becomes ``"{caption} <rm1> 1.2 <rm2> -0.6"``; the UNet is fine-tuned (LoRA through
peft by default, or fully), VAE and text encoder stay frozen. Needs the hub once and a GPU;
tests run it on tiny components built in code.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ric.artifacts import RicMeta, append_jsonl, read_jsonl, write_json
from ric.image.data import load_rgb, read_caption_folder
from ric.image.recipe import (
    ImageRecipe,
    cfg_drop_mask,
    conditioned_caption,
    image_format,
    round_rewards,
)
from ric.image.rewards import score_images
from ric.image.training import (
    TRAIN_SUMMARY,
    Callback,
    already_trained,
    finish,
    fit_stats,
    image_meta,
    train_device,
    train_loop,
)

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LoRA file name


def _score_folder(recipe: ImageRecipe, pairs: list[tuple[Path, str]], out: Path) -> np.ndarray:
    """Raw rewards of every training image, cached in out/scores.jsonl (resumable)."""
    cache = out / "scores.jsonl"
    rows = read_jsonl(cache)
    chunk = 64
    for s in tqdm(range(len(rows), len(pairs), chunk), desc="scoring training images"):
        part = pairs[s : s + chunk]
        # Rewards score the caption WITHOUT tags and the image as it is on disk.
        raw = score_images(
            recipe.rewards,
            [load_rgb(p) for p, _ in part],
            [c for _, c in part],
            recipe.reward_kwargs,
        )
        append_jsonl(
            cache,
            [{"file": str(p), "raw": r.tolist()} for (p, _), r in zip(part, raw, strict=True)],
        )
    rows = read_jsonl(cache)
    if [r["file"] for r in rows] != [str(p) for p, _ in pairs]:
        raise RuntimeError(f"{cache} was written for other images: delete it to rescore")
    return np.array([r["raw"] for r in rows], dtype=np.float64)


def load_sd_components(pretrained: str, dtype: torch.dtype = torch.float32) -> dict:
    """tokenizer, text_encoder, vae, unet and noise scheduler of a diffusers SD folder/id."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        return {
            "tokenizer": CLIPTokenizer.from_pretrained(pretrained, subfolder="tokenizer"),
            "text_encoder": CLIPTextModel.from_pretrained(
                pretrained, subfolder="text_encoder", dtype=dtype, use_safetensors=True
            ),
            "vae": AutoencoderKL.from_pretrained(
                pretrained, subfolder="vae", dtype=dtype, use_safetensors=True
            ),
            "unet": UNet2DConditionModel.from_pretrained(
                pretrained, subfolder="unet", use_safetensors=True
            ),
            "noise_scheduler": DDPMScheduler.from_pretrained(pretrained, subfolder="scheduler"),
        }
    except OSError as e:
        raise RuntimeError(
            f"could not load the diffusers pipeline {pretrained!r} (needs the hub once, or a "
            f"local folder with tokenizer/, text_encoder/, vae/, unet/, scheduler/, weights "
            f"as safetensors): {e}"
        ) from e


def train(recipe: ImageRecipe, callback: Callback | None = None) -> Path:
    """Fine-tune a Stable Diffusion UNet on reward-tagged captions; returns out_dir/model."""
    from peft import LoraConfig

    if recipe.train_data is None:
        raise ValueError("the sd backend needs train_data: a folder with metadata.jsonl")
    if (done := already_trained(recipe)) is not None:
        return done
    torch.manual_seed(recipe.seed)
    out = Path(recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = train_device(recipe)
    frozen_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        recipe.mixed_precision
    ]

    # 1. Data: captions + rewards of every training image (cached), z-scores, tags.
    pairs = read_caption_folder(recipe.train_data, recipe.caption_column)
    pairs = pairs[: recipe.max_train_images]
    raw = _score_folder(recipe, pairs, out)
    stats = fit_stats(recipe, raw)
    stats.save(out)
    z = round_rewards(stats.normalize(raw))
    fmt = image_format()

    # 2. Model: VAE and text encoder frozen; the UNet gets LoRA (or is trained fully).
    comp = load_sd_components(recipe.pretrained_model, frozen_dtype)
    tok, text_encoder, vae = comp["tokenizer"], comp["text_encoder"], comp["vae"]
    unet, noise_sched = comp["unet"], comp["noise_scheduler"]
    vae.requires_grad_(False).to(device)
    text_encoder.requires_grad_(False).to(device)
    if recipe.finetune == "lora":
        unet.requires_grad_(False)
        unet.add_adapter(
            LoraConfig(
                r=recipe.lora_r,
                lora_alpha=recipe.lora_alpha,
                init_lora_weights="gaussian",
                target_modules=list(recipe.lora_targets),
            )
        )
    if recipe.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.to(device)
    alphas = noise_sched.alphas_cumprod.to(device)
    scale = vae.config.scaling_factor

    def loss_fn(step: int, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        idx = rng.integers(0, len(pairs), recipe.batch_size)
        drop = cfg_drop_mask(len(idx), recipe.cond_dropout, rng)
        captions = [
            "" if d else conditioned_caption(pairs[i][1], z[i], fmt)
            for i, d in zip(idx, drop, strict=True)
        ]
        imgs = []
        for i in idx:
            img = load_rgb(pairs[i][0], recipe.resolution)
            imgs.append(img[:, ::-1] if rng.random() < 0.5 else img)  # random flip
        x = torch.as_tensor(np.stack(imgs).copy()).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        with torch.no_grad():
            latents = vae.encode(x.to(device, frozen_dtype)).latent_dist.sample(gen) * scale
            ids = tok(
                captions,
                padding="max_length",
                max_length=tok.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(device)
            text = text_encoder(ids)[0]
        latents, text = latents.float(), text.float()
        noise = torch.randn(latents.shape, generator=gen).to(device)
        t = torch.randint(0, len(alphas), (len(idx),), generator=gen).to(device)
        noisy = noise_sched.add_noise(latents, noise, t)
        if noise_sched.config.prediction_type == "v_prediction":
            target = noise_sched.get_velocity(latents, noise, t)
        else:
            target = noise
        pred = unet(noisy, t, encoder_hidden_states=text).sample
        return nn.functional.mse_loss(pred.float(), target.float())

    # 3. Train (resumable). No EMA over LoRA weights: the released recipes used none.
    recipe = dataclasses.replace(recipe, ema_decay=None)
    summary = train_loop(recipe, unet, loss_fn, callback)
    from ric.image.embedded import reward_conflict

    summary["reward_conflict_training"] = reward_conflict(raw, None)
    extra = {
        "backend": "sd",
        "finetune": recipe.finetune,
        "resolution": recipe.resolution,
        "train": summary,
        "recipe": dataclasses.asdict(recipe),
    }
    meta = image_meta(recipe, stats, recipe.pretrained_model, extra)

    def write(folder: Path) -> None:
        if recipe.finetune == "lora":
            from diffusers import StableDiffusionPipeline
            from diffusers.utils import convert_state_dict_to_diffusers
            from peft.utils import get_peft_model_state_dict

            layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
            StableDiffusionPipeline.save_lora_weights(
                folder, unet_lora_layers=layers, safe_serialization=True
            )
        else:
            unet.save_pretrained(folder / "unet", safe_serialization=True)
        stats.save(folder)
        meta.save(folder)

    folder = finish(out / "model", write)
    write_json(out / TRAIN_SUMMARY, summary)
    return folder


class SDBackend:
    """Sampling from the base pipeline plus the trained LoRA (or full UNet)."""

    train = staticmethod(train)

    def __init__(self, folder: Path, meta: RicMeta, device: torch.device, base: bool = False):
        from diffusers import StableDiffusionPipeline, UNet2DConditionModel

        dtype = torch.float16 if device.type == "cuda" else torch.float32
        # Safetensors only, here and below: a .bin file is a pickle, which can run code.
        try:
            pipe = StableDiffusionPipeline.from_pretrained(
                meta.base_model,
                safety_checker=None,
                requires_safety_checker=False,
                dtype=dtype,
                use_safetensors=True,
            )
        except OSError as e:
            raise RuntimeError(
                f"could not load the base pipeline {meta.base_model!r} from safetensors: {e}"
            ) from e
        if not base:
            if meta.extra.get("finetune", "lora") == "lora":
                pipe.load_lora_weights(str(folder), weight_name=LORA_WEIGHTS, use_safetensors=True)
            else:
                pipe.unet = UNet2DConditionModel.from_pretrained(
                    folder / "unet", dtype=dtype, use_safetensors=True
                )
        self.pipe = pipe.to(device)
        self.resolution = meta.extra.get("resolution")

    def images(self, captions, desired, seed, guidance, steps, progress, batch_size):
        self.pipe.set_progress_bar_config(disable=not progress)
        prompts = list(captions)
        if desired is not None:
            prompts = [conditioned_caption(c, desired) for c in captions]
        out = []
        for s in range(0, len(prompts), batch_size):
            gen = torch.Generator().manual_seed(int(seed or 0) + s)
            res = self.pipe(
                prompts[s : s + batch_size],
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=gen,
                height=self.resolution,
                width=self.resolution,
                output_type="np",
            ).images
            out.extend((np.clip(res, 0, 1) * 255).round().astype(np.uint8))
        return out
