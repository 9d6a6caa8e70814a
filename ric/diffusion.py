"""Rewards-in-Context for images: reward-conditioned diffusion models (METHOD.md section 7).

The same idea as for text: score every training image with every reward, z-score the rewards,
condition the model on them (rounded to 1 decimal), drop the condition 10% of the time so
classifier-free guidance works, and at inference map preference weights to desired rewards
(the released diffusion code's "quantile" mapping). Two backends share that recipe:

- "sd": a diffusers text-to-image pipeline (stable-diffusion-v1-5 in the paper). The caption
  becomes ``"{caption} <rm1> 1.2 <rm2> -0.6"``; the UNet is fine-tuned (LoRA through peft by
  default, or fully), VAE and text encoder stay frozen. Needs a hub and a GPU.
- "embedded": a small UNet2DModel trained from scratch on 32x32 patches of the photographs that
  scikit-image ships inside its package. The reward vector goes through a small MLP into the
  UNet's time embedding (``class_embed_type="identity"``); a flag input marks the null
  condition. Trains on a 2-core CPU in about 25 minutes (docs/IMAGE.md).

`train_image_model` trains either (resumable), `SteerableImageModel` is what the app and the
evaluator drive, `evaluate_image_front` sweeps preferences and writes front.json.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ric.artifacts import RicMeta, append_jsonl, read_json, read_jsonl, write_json, write_jsonl
from ric.conditioning import ConditioningFormat, format_reward_tags, sanitize_user_text
from ric.config import field
from ric.mapping import preference_to_rewards, simplex_grid
from ric.normalization import RewardStats
from ric.rewards import get_reward_fn, is_image_reward

IMAGE_TAG = "<rm{i}>"
EMBEDDED_BASE = "ric-embedded-unet"  # base_model of the embedded backend: no base to download
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LoRA file name
CONDITIONER_FILE = "conditioner.safetensors"
TRAIN_SUMMARY = "train_summary.json"
CHECKPOINT = "checkpoint"

# The photographs shipped inside the scikit-image package (skimage/data/, read from disk: no
# pooch download can happen), each with a sampling weight: colour photos twice as often as grey
# ones, so that "not colourful" is common but not the majority. Name -> (file, weight).
SKIMAGE_PHOTOS = {
    "astronaut": ("astronaut.png", 2),
    "chelsea": ("chelsea.png", 2),
    "coffee": ("coffee.png", 2),
    "rocket": ("rocket.jpg", 2),
    "colorwheel": ("color.png", 2),
    "hubble_deep_field": ("hubble_deep_field.jpg", 2),
    "immunohistochemistry": ("ihc.png", 2),
    "retina": ("retina.jpg", 2),
    "motorcycle": ("motorcycle_left.png", 2),
    "logo": ("logo.png", 2),
    "camera": ("camera.png", 1),
    "brick": ("brick.png", 1),
    "grass": ("grass.png", 1),
    "gravel": ("gravel.png", 1),
    "moon": ("moon.png", 1),
    "coins": ("coins.png", 1),
}


def image_format() -> ConditioningFormat:
    """The paper's image tags ``<rm1> 1.2 <rm2> -0.6``, values rounded to 1 decimal."""
    return ConditioningFormat(tag=IMAGE_TAG, decimals=1)


def conditioned_caption(
    caption: str, rewards: Sequence[float], fmt: ConditioningFormat | None = None
) -> str:
    """``"a red bus <rm1> 1.2 <rm2> -0.6"``; tags in the caption itself are neutralized.

    >>> conditioned_caption("a red bus", [1.23, -0.6])
    'a red bus <rm1> 1.2 <rm2> -0.6'
    """
    fmt = fmt or image_format()
    tags = format_reward_tags(rewards, fmt)
    caption = sanitize_user_text(caption, fmt).strip()
    return f"{caption} {tags}" if caption else tags


def round_rewards(z: np.ndarray, decimals: int = 1) -> np.ndarray:
    """The values the model is conditioned on: z-scores rounded as in the paper's tags."""
    return np.round(np.asarray(z, dtype=np.float64), decimals) + 0.0


def cfg_drop_mask(n: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Which samples lose caption and rewards (classifier-free guidance); True = dropped."""
    return rng.random(n) < p


# --- recipe ---


@dataclasses.dataclass
class ImageRecipe:
    # what to train
    kind: str = field("embedded", "'embedded' (small UNet from scratch) or 'sd' (text-to-image)")
    out_dir: str = field("runs/image", "output folder: model/, checkpoint/, logs")
    rewards: list = field(["compressibility", "colorfulness"], "image rewards, in tag order")
    reward_kwargs: dict = field({}, "per-reward factory kwargs, e.g. {compressibility: {size: 64}}")
    # RiC
    cond_dropout: float = field(0.1, "probability of dropping caption and rewards (CFG)")
    mapping: str = field("quantile", "preference mapping stored with the model")
    range_source: str = field("data", "mapping range: 'data' quantiles or 'gaussian'")
    range_quantiles: list = field([0.0, 1.0], "quantiles of the normalized rewards for low/high")
    guidance_scale: float = field(3.0, "default classifier-free guidance at sampling")
    num_inference_steps: int = field(25, "default sampling steps (DDIM for 'embedded')")
    # optimisation
    learning_rate: float = field(3e-4, "peak AdamW learning rate")
    weight_decay: float = field(0.0, "AdamW weight decay")
    warmup_steps: int = field(100, "linear warmup, then cosine decay to 10% at max_steps")
    batch_size: int = field(32, "images per optimizer step (per accumulation micro-step)")
    grad_accum: int = field(1, "gradient accumulation micro-steps per optimizer step")
    max_steps: int = field(2500, "optimizer steps")
    ema_decay: float | None = field(0.999, "EMA of the trained weights (None: no EMA)")
    save_steps: int = field(250, "checkpoint every N steps (the run resumes from the last)")
    logging_steps: int = field(25, "log the loss every N steps")
    seed: int = field(0, "seed of data order, noise and the patch bank")
    device: str | None = field(None, "torch device (default: cuda if available, else cpu)")
    threads: int | None = field(None, "torch CPU threads (default: torch's choice)")
    # embedded backend: data
    image_size: int = field(32, "embedded: image side in pixels")
    n_patches: int = field(40000, "embedded: patches cut from the skimage photographs")
    photos: list = field(list(SKIMAGE_PHOTOS), "embedded: skimage.data photographs to cut")
    # embedded backend: model
    block_out_channels: list = field([32, 64, 64], "embedded: UNet channels per level")
    attention_levels: list = field([False, False, True], "embedded: self-attention per level")
    layers_per_block: int = field(1, "embedded: resnet layers per UNet level")
    norm_num_groups: int = field(8, "embedded: GroupNorm groups (divides every channel count)")
    # sd backend
    pretrained_model: str = field(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd: diffusers pipeline id or folder"
    )
    train_data: str | None = field(None, "sd: folder with images and metadata.jsonl")
    caption_column: str = field("text", "sd: caption key in metadata.jsonl")
    max_train_images: int | None = field(None, "sd: use the first N images (None: all)")
    resolution: int = field(512, "sd: training and sampling resolution")
    finetune: str = field("lora", "sd: 'lora' (peft add_adapter) or 'full' UNet fine-tuning")
    lora_r: int = field(64, "sd: LoRA rank")
    lora_alpha: int = field(128, "sd: LoRA alpha")
    lora_targets: list = field(["to_k", "to_q", "to_v", "to_out.0"], "sd: LoRA target modules")
    mixed_precision: str = field("no", "sd: 'no', 'fp16' or 'bf16' for the frozen VAE/encoder")
    gradient_checkpointing: bool = field(False, "sd: trade compute for UNet activation memory")

    def __post_init__(self) -> None:
        if self.kind not in ("embedded", "sd"):
            raise ValueError(f"kind must be 'embedded' or 'sd', got {self.kind!r}")
        if len(self.rewards) < 2 or len(set(self.rewards)) != len(self.rewards):
            raise ValueError(f"need at least 2 distinct rewards, got {self.rewards}")
        for name in self.rewards:
            if not is_image_reward(name):
                raise ValueError(f"{name!r} is not an image reward (see ric.rewards.IMAGE_REWARDS)")
        unknown = set(self.reward_kwargs) - set(self.rewards)
        if unknown:
            raise ValueError(f"reward_kwargs for rewards not trained on: {sorted(unknown)}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.finetune not in ("lora", "full"):
            raise ValueError(f"finetune must be 'lora' or 'full', got {self.finetune!r}")
        if len(self.attention_levels) != len(self.block_out_channels):
            raise ValueError("attention_levels needs one entry per block_out_channels level")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"norm_num_groups {self.norm_num_groups} must divide every channel count "
                f"{self.block_out_channels}"
            )
        for key in ("max_steps", "batch_size", "grad_accum", "save_steps", "logging_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1")


# --- rewards on image batches ---


def score_images(
    names: Sequence[str],
    images: Sequence[Any],
    prompts: Sequence[str] | None = None,
    reward_kwargs: dict | None = None,
    chunk: int = 512,
    progress: bool = False,
) -> np.ndarray:
    """Raw rewards, shape (n_images, n_rewards); prompts default to "" (no caption)."""
    reward_kwargs = reward_kwargs or {}
    fns = [get_reward_fn(n, **reward_kwargs.get(n, {})) for n in names]
    images = list(images)
    prompts = [""] * len(images) if prompts is None else list(prompts)
    out = np.zeros((len(images), len(fns)), dtype=np.float64)
    starts = range(0, len(images), chunk)
    for s in tqdm(starts, desc="scoring images", unit="chunk", disable=not progress):
        for j, fn in enumerate(fns):
            out[s : s + chunk, j] = fn(prompts[s : s + chunk], images[s : s + chunk])
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


# --- data for the embedded backend: photographs bundled with scikit-image ---


def skimage_data_dir() -> Path:
    """skimage/data/ inside the installed package (found without importing skimage)."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded image model trains on scikit-image's photographs: "
            "pip install scikit-image"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_photos(names: Sequence[str] | None = None) -> list[np.ndarray]:
    """The bundled photographs as HxWx3 uint8: grey ones as RGB, RGBA composited on white."""
    from PIL import Image

    names = list(SKIMAGE_PHOTOS) if names is None else list(names)
    photos = []
    for name in names:
        if name not in SKIMAGE_PHOTOS:
            raise ValueError(
                f"{name!r} is not a bundled skimage photograph; choose from {list(SKIMAGE_PHOTOS)}"
            )
        path = skimage_data_dir() / SKIMAGE_PHOTOS[name][0]
        if not path.is_file():
            raise RuntimeError(f"{path} is missing: reinstall scikit-image")
        with Image.open(path) as im:
            if im.mode in ("RGBA", "LA", "P"):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba).convert("RGB")
            else:
                img = im.convert("RGB")
        photos.append(np.asarray(img))
    return photos


def make_patches(
    n: int,
    size: int = 32,
    seed: int = 0,
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """n random size x size patches, shape (n, size, size, 3) uint8, deterministic in seed.

    Each patch: a photograph drawn by its SKIMAGE_PHOTOS weight, a square crop whose side is
    log-uniform between `size` and the photograph's short side (from texture close-ups to the
    whole scene), downscaled with a box filter, flipped left-right half the time.
    """
    from PIL import Image

    names = list(SKIMAGE_PHOTOS) if names is None else list(names)
    photos = [Image.fromarray(p) for p in load_photos(names)]
    weights = np.array([SKIMAGE_PHOTOS[n_][1] for n_ in names], dtype=np.float64)
    rng = np.random.default_rng(seed)
    which = rng.choice(len(photos), size=n, p=weights / weights.sum())
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for k in tqdm(range(n), desc="cutting patches", unit="patch", disable=not progress):
        photo = photos[which[k]]
        w, h = photo.size
        side = int(round(math.exp(rng.uniform(math.log(size), math.log(min(w, h))))))
        x, y = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
        patch = photo.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BOX)
        if rng.random() < 0.5:
            patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out[k] = np.asarray(patch)
    return out


# --- the embedded model: UNet2DModel + reward conditioner ---


class RewardConditioner(nn.Module):
    """Normalized reward vector -> an embedding added to the UNet's time embedding.

    Input: the (rounded) z-scores and a flag; the null condition (CFG dropout) is zeros with the
    flag set, so "no preference" is a point the model learns, not a reward value of 0. The last
    layer starts at zero: an untrained conditioner leaves the UNet unconditional.
    """

    def __init__(self, n_rewards: int, dim: int) -> None:
        super().__init__()
        self.n_rewards = n_rewards
        self.net = nn.Sequential(nn.Linear(n_rewards + 1, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, rewards: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
        null = null.to(rewards.dtype)[:, None]
        return self.net(torch.cat([rewards * (1.0 - null), null], dim=1))


class RewardUNet(nn.Module):
    """UNet2DModel (class_embed_type="identity") conditioned through a RewardConditioner."""

    def __init__(self, unet, conditioner: RewardConditioner) -> None:
        super().__init__()
        self.unet, self.conditioner = unet, conditioner

    def forward(self, x, t, rewards: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
        emb = self.conditioner(rewards, null)
        return self.unet(x, t, class_labels=emb).sample

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        self.unet.save_pretrained(folder / "unet", safe_serialization=True)
        state = {k: v.detach().contiguous() for k, v in self.conditioner.state_dict().items()}
        save_file(state, str(folder / CONDITIONER_FILE))

    @classmethod
    def load(cls, folder: str | Path, n_rewards: int) -> RewardUNet:
        from diffusers import UNet2DModel
        from safetensors.torch import load_file

        folder = Path(folder)
        unet = UNet2DModel.from_pretrained(folder / "unet", use_safetensors=True)
        conditioner = RewardConditioner(n_rewards, _time_embed_dim(unet))
        conditioner.load_state_dict(load_file(str(folder / CONDITIONER_FILE)))
        return cls(unet, conditioner).eval()


def _time_embed_dim(unet) -> int:
    return unet.config.time_embedding_dim or unet.config.block_out_channels[0] * 4


def build_reward_unet(recipe: ImageRecipe, n_rewards: int) -> RewardUNet:
    """A fresh embedded model from the recipe's size settings."""
    from diffusers import UNet2DModel

    attn, chans = recipe.attention_levels, recipe.block_out_channels
    unet = UNet2DModel(
        sample_size=recipe.image_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(chans),
        layers_per_block=recipe.layers_per_block,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        norm_num_groups=recipe.norm_num_groups,
        # Heads of 32 channels (one head where a level has fewer).
        attention_head_dim=min([32] + [c for c, a in zip(chans, attn, strict=True) if a]),
        class_embed_type="identity",
    )
    return RewardUNet(unet, RewardConditioner(n_rewards, _time_embed_dim(unet)))


def make_noise_scheduler():
    """Training noise schedule; the cosine schedule suits small images better than linear."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")


@torch.no_grad()
def sample_embedded(
    model: RewardUNet,
    scheduler_config: dict,
    desired: np.ndarray | None,
    n: int,
    guidance_scale: float = 3.0,
    num_inference_steps: int = 25,
    seed: int | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> np.ndarray:
    """n images (n, H, W, 3) uint8 for desired normalized rewards; None = null condition.

    With guidance g: eps = eps_null + g (eps_cond - eps_null), as in classifier-free guidance;
    g = 1 runs the conditional model alone, g = 0 the unconditional one.
    """
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(num_inference_steps)
    device = next(model.parameters()).device
    size = model.unet.config.sample_size
    k = model.conditioner.n_rewards
    gen = torch.Generator().manual_seed(int(seed if seed is not None else 0))
    x_all = torch.randn(n, 3, size, size, generator=gen)  # drawn at once: batch-size invariant
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    conditioned = desired is not None
    cond = torch.as_tensor(np.zeros(k) if desired is None else desired, dtype=torch.float32)
    batches = range(0, n, batch_size)
    bar = tqdm(total=len(batches) * len(sched.timesteps), desc="sampling", disable=not progress)
    for s in batches:
        x = x_all[s : s + batch_size].to(device)
        b = x.shape[0]
        r = cond.to(device).expand(b, k)
        # One pass for each of (conditional, null) that guidance needs, batched together.
        if not conditioned:
            passes = [False]
        elif guidance_scale == 1:
            passes = [True]
        else:
            passes = [True, False]
        null = torch.cat([torch.full((b,), not p, device=device) for p in passes])
        rr = r.repeat(len(passes), 1)
        for t in sched.timesteps:
            eps = model(x.repeat(len(passes), 1, 1, 1), t.to(device), rr, null)
            if len(passes) == 2:
                e_c, e_u = eps.chunk(2)
                eps = e_u + guidance_scale * (e_c - e_u)
            x = sched.step(eps, t, x).prev_sample
            bar.update(1)
        img = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        out[s : s + b] = img.permute(0, 2, 3, 1).cpu().numpy()
    bar.close()
    return out


# --- training: shared loop pieces ---


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup, then cosine from 1 down to 0.1 at `total` (a function of the step
    alone, so a resumed run follows the same schedule)."""
    if step < warmup:
        return (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))


def _trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().cpu().contiguous() for n, p in module.named_parameters() if p.requires_grad
    }


def _save_checkpoint(
    out: Path, module: nn.Module, opt, state: dict, ema: dict[str, torch.Tensor] | None
) -> None:
    """out/checkpoint/, replaced atomically: a kill at any moment leaves a complete one."""
    from safetensors.torch import save_file

    tmp, final, old = out / f"{CHECKPOINT}.tmp", out / CHECKPOINT, out / f"{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_trainable_state(module), str(tmp / "trainable.safetensors"))
    if ema is not None:
        save_file({k: v.cpu().contiguous() for k, v in ema.items()}, str(tmp / "ema.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    write_json(tmp / "state.json", state)  # step and the training time spent to reach it
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _checkpoint_dir(out: Path) -> Path | None:
    for folder in (out / CHECKPOINT, out / f"{CHECKPOINT}.old"):  # .old: killed mid-swap
        if (folder / "state.json").exists():
            return folder
    return None


def _load_checkpoint(out: Path, module: nn.Module, opt, ema: dict | None) -> dict:
    """Restore the last checkpoint into module/opt/ema; returns its state ({} if none)."""
    from safetensors.torch import load_file

    folder = _checkpoint_dir(out)
    if folder is None:
        return {}
    params = dict(module.named_parameters())
    state = load_file(str(folder / "trainable.safetensors"))
    missing = {n for n, p in params.items() if p.requires_grad} - set(state)
    if missing or set(state) - set(params):
        raise RuntimeError(
            f"{folder} does not match this recipe's model (missing {sorted(missing)[:3]}...): "
            "delete it or use another out_dir"
        )
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
    if ema is not None and (folder / "ema.safetensors").exists():
        for k, v in load_file(str(folder / "ema.safetensors")).items():
            ema[k].copy_(v)
    opt.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    return read_json(folder / "state.json")


def _already_trained(recipe: ImageRecipe) -> Path | None:
    """out_dir/model when the last checkpoint is at max_steps: a rerun has nothing to do."""
    out = Path(recipe.out_dir)
    folder = _checkpoint_dir(out)
    model = out / "model"
    done = folder is not None and read_json(folder / "state.json")["step"] >= recipe.max_steps
    if done and (model / "ric.json").exists():
        print(f"{model} is already trained to step {recipe.max_steps}", flush=True)
        return model
    return None


def _update_ema(ema: dict[str, torch.Tensor], module: nn.Module, decay: float, step: int) -> None:
    # Warm-up of the decay (as in diffusers' EMAModel): early weights are not averaged in long.
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in ema:
                ema[name].mul_(d).add_(p.detach(), alpha=1 - d)


def _device(recipe: ImageRecipe) -> torch.device:
    return torch.device(recipe.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


StepFn = Callable[[int, np.random.Generator, torch.Generator], torch.Tensor]
Callback = Callable[[int, float, nn.Module], None]


def _train_loop(
    recipe: ImageRecipe,
    module: nn.Module,
    loss_fn: StepFn,
    callback: Callback | None = None,
) -> dict:
    """AdamW over module's trainable parameters, resumable from out_dir/checkpoint.

    loss_fn(micro_step, numpy rng, torch generator) -> loss; both generators are seeded from
    (seed, step), so a resumed run draws exactly the batches and noise of an uninterrupted one.
    """
    out = Path(recipe.out_dir)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    ema = None
    if recipe.ema_decay is not None:
        ema = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    state = _load_checkpoint(out, module, opt, ema)
    start = state.get("step", 0)
    # Training time accumulated over resumed runs (up to each checkpoint).
    prior_wall, prior_cpu = state.get("train_seconds", 0.0), state.get("cpu_seconds", 0.0)
    log_file = out / "train_log.jsonl"
    logged = read_jsonl(log_file)
    if any(r["step"] > start for r in logged):  # rows the kill made stale: the steps rerun
        write_jsonl(log_file, [r for r in logged if r["step"] <= start])
    if start:
        print(f"resuming from step {start} ({out / CHECKPOINT})", flush=True)
    t0, c0 = time.time(), _cpu_seconds()
    bar = tqdm(total=recipe.max_steps, initial=start, desc="training", unit="step")
    module.train()
    for step in range(start, recipe.max_steps):
        for g in opt.param_groups:
            g["lr"] = recipe.learning_rate * _lr_factor(step, recipe.warmup_steps, recipe.max_steps)
        total = 0.0
        for micro in range(recipe.grad_accum):
            rng = np.random.default_rng([recipe.seed, step, micro])
            gen = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step * 97 + micro)
            loss = loss_fn(step, rng, gen) / recipe.grad_accum
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            _update_ema(ema, module, recipe.ema_decay, step)
        bar.update(1)
        bar.set_postfix(loss=f"{total:.4f}")
        done = step + 1
        if done % recipe.logging_steps == 0 or done == recipe.max_steps:
            lr = opt.param_groups[0]["lr"]
            append_jsonl(log_file, [{"step": done, "loss": round(total, 5), "lr": lr}])
        if done % recipe.save_steps == 0 or done == recipe.max_steps:
            spent = {
                "step": done,
                "train_seconds": round(prior_wall + time.time() - t0, 1),
                "cpu_seconds": round(prior_cpu + _cpu_seconds() - c0, 1),
            }
            _save_checkpoint(out, module, opt, spent, ema)
        if callback is not None:
            callback(done, total, module)
    bar.close()
    wall, cpu = time.time() - t0, _cpu_seconds() - c0
    steps_run = recipe.max_steps - start
    logged = read_jsonl(log_file)
    if ema is not None:  # the shipped weights are the EMA ones
        with torch.no_grad():
            for name, p in module.named_parameters():
                if name in ema:
                    p.copy_(ema[name])
    module.eval()
    return {
        "steps": recipe.max_steps,
        "batch_size": recipe.batch_size * recipe.grad_accum,
        "train_seconds": round(prior_wall + wall, 1),  # all runs, excluding data preparation
        "cpu_seconds": round(prior_cpu + cpu, 1),
        "seconds_per_step": round((prior_wall + wall) / recipe.max_steps, 4),
        "resumed_from": start,
        "steps_this_run": steps_run,
        "wall_seconds_this_run": round(wall, 1),
        "threads": torch.get_num_threads(),
        "device": str(next(module.parameters()).device),
        "final_loss": logged[-1]["loss"] if logged else None,
    }


def _fit_stats(recipe: ImageRecipe, raw: np.ndarray) -> RewardStats:
    return RewardStats.fit(
        raw,
        list(recipe.rewards),
        range_source=recipe.range_source,
        range_quantiles=recipe.range_quantiles,
        seed=recipe.seed,
    )


def _meta(recipe: ImageRecipe, stats: RewardStats, base_model: str, extra: dict) -> RicMeta:
    return RicMeta(
        base_model=base_model,
        reward_names=list(recipe.rewards),
        stats=stats.to_dict(),
        conditioning=image_format().to_dict(),
        mapping=recipe.mapping,
        kind="image",
        extra={
            "reward_kwargs": recipe.reward_kwargs,
            "guidance_scale": recipe.guidance_scale,
            "num_inference_steps": recipe.num_inference_steps,
            "cond_dropout": recipe.cond_dropout,
            **extra,
        },
    )


def _finish(folder: Path, write: Callable[[Path], None]) -> Path:
    """Write the final model into folder.tmp, then swap it in: never a half-written model."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


# --- training: the embedded backend ---


def train_embedded(recipe: ImageRecipe, callback: Callback | None = None) -> Path:
    """Train the small reward-conditioned UNet on skimage patches; returns out_dir/model."""
    if (done := _already_trained(recipe)) is not None:
        return done
    torch.manual_seed(recipe.seed)
    out = Path(recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    # 1. Data: a deterministic patch bank, so a resumed run sees the same patches and stats.
    patches = make_patches(
        recipe.n_patches, recipe.image_size, recipe.seed, recipe.photos, progress=True
    )
    raw = score_images(
        recipe.rewards, list(patches), reward_kwargs=recipe.reward_kwargs, progress=True
    )
    stats = _fit_stats(recipe, raw)
    stats.save(out)
    z = torch.as_tensor(round_rewards(stats.normalize(raw)), dtype=torch.float32)
    data_seconds = time.time() - t0
    device = _device(recipe)
    pixels = torch.as_tensor(patches).permute(0, 3, 1, 2).contiguous()  # uint8, (n, 3, H, W)

    # 2. Model and noise schedule.
    model = build_reward_unet(recipe, len(recipe.rewards)).to(device)
    noise_sched = make_noise_scheduler()
    alphas = noise_sched.alphas_cumprod.to(device)

    def loss_fn(step: int, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        idx = torch.as_tensor(rng.integers(0, len(pixels), recipe.batch_size))
        x0 = (pixels[idx].float() / 127.5 - 1.0).to(device)
        r = z[idx].to(device)
        null = torch.as_tensor(cfg_drop_mask(len(idx), recipe.cond_dropout, rng), device=device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, len(alphas), (len(idx),), generator=gen).to(device)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        return nn.functional.mse_loss(model(xt, t, r, null), noise)

    # 3. Train (resumes from out_dir/checkpoint), 4. save the EMA weights with their metadata.
    summary = _train_loop(recipe, model, loss_fn, callback)
    summary["data_seconds"] = round(data_seconds, 1)
    summary["reward_spearman"] = spearman(raw[:, 0], raw[:, 1])
    model.cpu()
    scheduler_config = _ddim_config(noise_sched)
    extra = {
        "backend": "embedded",
        "image_size": recipe.image_size,
        "train": summary,
        "recipe": dataclasses.asdict(recipe),
    }
    meta = _meta(recipe, stats, EMBEDDED_BASE, extra)

    def write(folder: Path) -> None:
        model.save(folder)
        _save_scheduler(scheduler_config, folder)
        stats.save(folder)
        meta.save(folder)

    folder = _finish(out / "model", write)
    # Sampling speed of the saved model, as the app will see it (threads as in this run).
    steer = SteerableImageModel.load(folder)
    summary["sample_timing"] = time_generation(steer)
    meta.extra["train"] = summary
    meta.save(folder)
    write_json(out / TRAIN_SUMMARY, summary)
    return folder


def _ddim_config(noise_sched) -> dict:
    from diffusers import DDIMScheduler

    return dict(DDIMScheduler.from_config(noise_sched.config).config)


def _save_scheduler(config: dict, folder: Path) -> None:
    from diffusers import DDIMScheduler

    DDIMScheduler.from_config(config).save_pretrained(folder / "scheduler")


# --- training: the Stable Diffusion backend ---


def read_caption_folder(folder: str | Path, caption_column: str = "text") -> list[tuple[Path, str]]:
    """(image path, caption) pairs from FOLDER/metadata.jsonl, the Hugging Face imagefolder
    layout: one ``{"file_name": "x.jpg", "text": "a caption"}`` per line."""
    folder = Path(folder)
    meta = folder / "metadata.jsonl"
    if not meta.exists():
        raise FileNotFoundError(f"{meta} not found: the sd backend reads images + captions there")
    pairs = []
    for i, row in enumerate(read_jsonl(meta)):
        if "file_name" not in row or caption_column not in row:
            raise ValueError(f"{meta} line {i + 1} needs 'file_name' and {caption_column!r}")
        path = folder / row["file_name"]
        if not path.exists():
            raise FileNotFoundError(f"{meta} line {i + 1}: {path} does not exist")
        pairs.append((path, str(row[caption_column])))
    if len(pairs) < 2:
        raise ValueError(f"{meta} lists {len(pairs)} images; need at least 2")
    return pairs


def _load_rgb(path: Path, resolution: int | None = None) -> np.ndarray:
    """An RGB image; with resolution: shorter side resized to it, then centre-cropped."""
    from PIL import Image

    with Image.open(path) as im:
        img = im.convert("RGB")
    if resolution is not None:
        w, h = img.size
        s = resolution / min(w, h)
        img = img.resize((max(resolution, round(w * s)), max(resolution, round(h * s))))
        w, h = img.size
        left, top = (w - resolution) // 2, (h - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
    return np.asarray(img)


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
            [_load_rgb(p) for p, _ in part],
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


def train_sd(recipe: ImageRecipe, callback: Callback | None = None) -> Path:
    """Fine-tune a Stable Diffusion UNet on reward-tagged captions; returns out_dir/model."""
    from peft import LoraConfig

    if recipe.train_data is None:
        raise ValueError("the sd backend needs train_data: a folder with metadata.jsonl")
    if (done := _already_trained(recipe)) is not None:
        return done
    torch.manual_seed(recipe.seed)
    out = Path(recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = _device(recipe)
    frozen_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        recipe.mixed_precision
    ]

    # 1. Data: captions + rewards of every training image (cached), z-scores, tags.
    pairs = read_caption_folder(recipe.train_data, recipe.caption_column)
    pairs = pairs[: recipe.max_train_images]
    raw = _score_folder(recipe, pairs, out)
    stats = _fit_stats(recipe, raw)
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
            img = _load_rgb(pairs[i][0], recipe.resolution)
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
    summary = _train_loop(recipe, unet, loss_fn, callback)
    summary["reward_spearman"] = spearman(raw[:, 0], raw[:, 1])
    extra = {
        "backend": "sd",
        "finetune": recipe.finetune,
        "resolution": recipe.resolution,
        "train": summary,
        "recipe": dataclasses.asdict(recipe),
    }
    meta = _meta(recipe, stats, recipe.pretrained_model, extra)

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

    folder = _finish(out / "model", write)
    write_json(out / TRAIN_SUMMARY, summary)
    return folder


def train_image_model(recipe: ImageRecipe, callback: Callback | None = None) -> Path:
    """Train the recipe's backend; rerunning the same recipe resumes a killed run.

    callback(step, loss, module) runs after every optimizer step (tests use it to inspect the
    model or to simulate a kill)."""
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    if recipe.kind == "sd":
        return train_sd(recipe, callback)
    return train_embedded(recipe, callback)


# --- inference: the steerable image model ---


class _EmbeddedBackend:
    def __init__(self, folder: Path, meta: RicMeta, device: torch.device):
        self.model = RewardUNet.load(folder, len(meta.reward_names)).to(device)
        sched_dir = folder / "scheduler"
        self.scheduler_config = read_json(sched_dir / "scheduler_config.json")

    def images(self, captions, desired, seed, guidance, steps, progress, batch_size):
        return list(
            sample_embedded(
                self.model,
                self.scheduler_config,
                desired,
                len(captions),
                guidance,
                steps,
                seed,
                batch_size,
                progress,
            )
        )


class _SDBackend:
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


class SteerableImageModel:
    """A RiC image model with its metadata: preference weights in, images and rewards out.

    The image counterpart of ric.steering.SteerableModel. ``base=True`` gives the reference
    point: the embedded model under its null condition, or the SD base pipeline without the
    RiC weights (and captions without tags).
    """

    def __init__(self, backend, meta: RicMeta, conditioned: bool = True):
        self.backend, self.meta, self.conditioned = backend, meta, conditioned
        self.stats = RewardStats.from_dict(meta.stats)
        self.fmt = ConditioningFormat.from_dict(meta.conditioning)
        kwargs = meta.extra.get("reward_kwargs", {})
        self._rewards = [get_reward_fn(n, **kwargs.get(n, {})) for n in meta.reward_names]
        # One generation at a time: torch on a few cores gains nothing from overlapping them.
        self.lock = threading.Lock()

    @classmethod
    def load(
        cls, folder: str | Path, device: str | None = None, base: bool = False
    ) -> SteerableImageModel:
        folder = Path(folder)
        meta = RicMeta.load(folder)
        if meta.kind != "image":
            raise ValueError(f"{folder} holds a {meta.kind!r} model, not an image model")
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if meta.extra.get("backend") == "sd":
            return cls(_SDBackend(folder, meta, dev, base), meta, conditioned=not base)
        return cls(_EmbeddedBackend(folder, meta, dev), meta, conditioned=not base)

    @property
    def reward_names(self) -> list[str]:
        return list(self.meta.reward_names)

    @property
    def backend_name(self) -> str:
        return self.meta.extra.get("backend", "embedded")

    def desired(self, weights: Sequence[float], method: str | None = None) -> np.ndarray:
        """Desired normalized rewards for preference weights, rounded as the model sees them."""
        z = preference_to_rewards(weights, method=method or self.meta.mapping, stats=self.stats)
        return round_rewards(z, self.fmt.decimals)

    def score(self, prompts: list[str], images: list[Any]) -> np.ndarray:
        """Normalized rewards (n, n_rewards); reward models see captions without tags."""
        raw = np.stack([fn(prompts, images) for fn in self._rewards], axis=1)
        return self.stats.normalize(raw)

    def generate(
        self,
        weights: Sequence[float] | None,
        n: int = 4,
        seed: int | None = 0,
        method: str | None = None,
        prompt: str | Sequence[str] = "",
        guidance_scale: float | None = None,
        num_inference_steps: int | None = None,
        batch_size: int = 16,
        progress: bool = False,
    ) -> tuple[list, np.ndarray | None, np.ndarray]:
        """(n PIL images, desired (n_rewards,) or None, achieved normalized (n, n_rewards)).

        prompt: one caption for all n images, or n captions (ignored by the embedded model,
        which has no text input). weights=None (or a base model) samples unconditioned.
        """
        from PIL import Image

        if not isinstance(n, int) or not 1 <= n <= 256:
            raise ValueError(f"n must be an int in [1, 256], got {n!r}")
        captions = [prompt] * n if isinstance(prompt, str) else list(prompt)
        if len(captions) != n or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"prompt must be one str or {n} str")
        desired = None
        if weights is not None and self.conditioned:
            desired = self.desired(weights, method)
        guidance = self.meta.extra.get("guidance_scale", 3.0)
        guidance = guidance if guidance_scale is None else guidance_scale
        steps = num_inference_steps or self.meta.extra.get("num_inference_steps", 25)
        if not (isinstance(steps, int) and 1 <= steps <= 1000):
            raise ValueError(f"num_inference_steps must be an int in [1, 1000], got {steps!r}")
        with self.lock:
            arrays = self.backend.images(
                captions, desired, seed, guidance, steps, progress, batch_size
            )
        return [Image.fromarray(a) for a in arrays], desired, self.score(captions, arrays)


def enlarge(images: Sequence[Any], size: int = 128) -> list:
    """Nearest-neighbour upscaling for display: 32 px samples stay crisp, not blurred."""
    from PIL import Image

    out = []
    for img in images:
        img = img if hasattr(img, "resize") else Image.fromarray(np.asarray(img))
        out.append(img.resize((size, size), Image.Resampling.NEAREST))
    return out


def time_generation(model: SteerableImageModel, n: int = 4, weights=None, repeats: int = 1) -> dict:
    """Measured seconds to generate (and score) a batch of n images, after one warm-up call."""
    k = len(model.reward_names)
    weights = [1.0 / k] * k if weights is None else weights
    model.generate(weights, n=1, seed=0, num_inference_steps=2)  # warm-up: lazy inits, caches
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        model.generate(weights, n=n, seed=r)
        times.append(time.perf_counter() - t0)
    return {
        "n_images": n,
        "seconds": round(min(times), 3),
        "num_inference_steps": model.meta.extra.get("num_inference_steps"),
        "guidance_scale": model.meta.extra.get("guidance_scale"),
        "threads": torch.get_num_threads(),
    }


def probe_timing(recipe: ImageRecipe, steps: int = 5, n_images: int = 4) -> dict:
    """Seconds per training step and per batch of n_images for the recipe's embedded model,
    measured on a few real patches (no full training): the basis of the budget estimates.
    Uses torch's current thread count (set it first; recipe.threads is not applied)."""
    model = build_reward_unet(recipe, len(recipe.rewards))
    noise_sched = make_noise_scheduler()
    alphas = noise_sched.alphas_cumprod
    patches = make_patches(256, recipe.image_size, recipe.seed, recipe.photos)
    x0 = torch.as_tensor(patches[: recipe.batch_size]).permute(0, 3, 1, 2).float() / 127.5 - 1
    r = torch.randn(len(x0), len(recipe.rewards))
    null = torch.zeros(len(x0), dtype=torch.bool)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate)
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and is not counted
        t0 = time.perf_counter()
        t = torch.randint(0, len(alphas), (len(x0),))
        noise = torch.randn_like(x0)
        a = alphas[t].view(-1, 1, 1, 1)
        loss = nn.functional.mse_loss(
            model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, r, null), noise
        )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    model.eval()
    config = _ddim_config(noise_sched)
    t0 = time.perf_counter()
    sample_embedded(
        model,
        config,
        np.zeros(len(recipe.rewards)),
        n_images,
        recipe.guidance_scale,
        recipe.num_inference_steps,
        seed=0,
    )
    sample_s = time.perf_counter() - t0
    step_s = float(np.median(times[1:]))
    return {
        "threads": torch.get_num_threads(),
        "params_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "batch_size": recipe.batch_size,
        "seconds_per_step": round(step_s, 3),
        "estimated_training_minutes": round(step_s * recipe.max_steps / 60, 1),
        "sample_seconds": round(sample_s, 2),
        "n_images": n_images,
        "num_inference_steps": recipe.num_inference_steps,
        "guidance_scale": recipe.guidance_scale,
    }


# --- evaluation: the preference sweep for images ---


@dataclasses.dataclass
class ImageEvalConfig:
    model: str = field("assets/image/model", "RiC image model folder")
    base: bool = field(False, "evaluate WITHOUT conditioning (one reference point)")
    n_images: int = field(32, "images per weight (embedded; sd: one per caption)")
    prompts: str | None = field(None, "captions file, one per line (sd; e.g. 1000 COCO captions)")
    max_prompts: int | None = field(None, "use the first N captions")
    points: int | None = field(None, "K evenly spaced weights (2 objectives; default 11)")
    method: str | None = field(None, "mapping method (default: the model's)")
    range_quantiles: list | None = field(
        None,
        "mapping range as quantiles of the training rewards, e.g. [0.05, 0.95] "
        "(default: the artifact's own)",
    )
    guidance_scale: float | None = field(None, "CFG scale (default: the model's)")
    num_inference_steps: int | None = field(None, "sampling steps (default: the model's)")
    batch_size: int = field(16, "images per sampling batch")
    reference_point: list | None = field(
        None, "hypervolume reference point (default: each reward's 0.02 training quantile)"
    )
    grid_cols: int = field(8, "samples per row in the PNG grid")
    label: str | None = field(None, "name of this front in plots and tables")
    out: str = field("runs/eval_image", "output folder: front.json, samples.jsonl, grid.png")
    seed: int = field(0, "sampling seed, the same for every weight (paired comparison)")
    device: str | None = field(None, "torch device")


def evaluate_image_front(cfg: ImageEvalConfig, steer: SteerableImageModel | None = None) -> dict:
    """Run (or resume) the sweep; writes cfg.out/front.json, samples.jsonl, images/ and
    grid.png (one row of samples per weight) and returns the front."""
    from ric.evaluation import REFERENCE_QUANTILE
    from ric.pareto import controllability_report, hypervolume, pareto_mask, sparsity

    out = Path(cfg.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    t0, c0 = time.time(), _cpu_seconds()
    steer = steer or SteerableImageModel.load(cfg.model, cfg.device, base=cfg.base)
    if cfg.range_quantiles:
        steer.stats = steer.stats.with_range(cfg.range_quantiles)
    names = steer.reward_names
    if cfg.prompts:
        from ric.training import read_prompts

        captions = read_prompts(cfg.prompts)[: cfg.max_prompts]
    else:
        captions = [""] * cfg.n_images
    sweep = [None] if cfg.base else simplex_grid(len(names), cfg.points).tolist()
    samples = out / "samples.jsonl"
    from ric.evaluation import check_resume, model_file_mtime
    from ric.training import command_line

    skip = ("out", "label", "batch_size", "grid_cols", "device", "reference_point")
    check_resume(
        out,
        {
            **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip},
            "reward_names": names,
            "stats": steer.stats.to_dict(),
            "weights_mtime": model_file_mtime(cfg.model, "conditioner.safetensors"),
        },
    )
    done = {tuple(r["weights"]) if r["weights"] else None for r in read_jsonl(samples)}
    for k, w in enumerate(sweep):
        if (tuple(w) if w else None) in done:
            continue
        # The same seed for every weight: the rows of the grid differ by the preference only.
        images, desired, achieved = steer.generate(
            w,
            n=len(captions),
            seed=cfg.seed,
            method=cfg.method,
            prompt=captions,
            guidance_scale=cfg.guidance_scale,
            num_inference_steps=cfg.num_inference_steps,
            batch_size=cfg.batch_size,
            progress=True,
        )
        rows = []
        for j, (img, cap, a) in enumerate(zip(images, captions, achieved, strict=True)):
            name = f"w{k:02d}_{j:04d}.png"
            img.save(out / "images" / name)
            rows.append(
                {
                    "weights": w,
                    "desired": None if desired is None else desired.tolist(),
                    "prompt": cap,
                    "image": f"images/{name}",
                    "achieved": a.round(4).tolist(),
                }
            )
        append_jsonl(samples, rows)
    rows = read_jsonl(samples)
    from ric.evaluation import aggregate_sweep

    points, per = aggregate_sweep(sweep, rows)
    achieved = np.array([p["achieved"] for p in points])
    if cfg.reference_point is not None:
        ref = np.asarray(cfg.reference_point, dtype=float)
        if ref.shape != (len(names),):
            raise ValueError(f"reference_point needs {len(names)} values")
    else:
        ref = np.round(steer.stats.quantile(REFERENCE_QUANTILE), 3)
    front = {
        "label": cfg.label or ("unconditioned" if cfg.base else "RiC (image)"),
        "reward_names": names,
        "reference_point": ref.tolist(),
        "hypervolume": float(hypervolume(achieved, ref)),
        "sparsity": float(sparsity(achieved[pareto_mask(achieved)])),
        "points": points,
        "per_prompt": {"n_prompts": len(per[0]), "achieved": per},
        "settings": dataclasses.asdict(cfg),
        "stats_source": steer.stats.range_source,
        "command": command_line(),
        "wall_seconds": round(time.time() - t0, 1),
        "cpu_seconds": round(_cpu_seconds() - c0, 1),
    }
    if not cfg.base:
        desired = np.array([p["desired"] for p in points])
        front["controllability"] = controllability_report(np.array(sweep), desired, achieved)
    write_json(out / "front.json", front)
    save_image_grid(out, rows, sweep, cfg.grid_cols)
    return front


def save_image_grid(out: Path, rows: list[dict], sweep: list, cols: int = 8) -> Path:
    """out/grid.png: one row of samples per weight, labelled with the weights."""
    from PIL import Image, ImageDraw

    from ric.plotting import weights_text

    cell, label_w = 96, 120
    grid = Image.new("RGB", (label_w + cols * cell, len(sweep) * cell), "white")
    draw = ImageDraw.Draw(grid)
    for i, w in enumerate(sweep):
        mine = [r for r in rows if r["weights"] == w][:cols]
        draw.text((4, i * cell + cell // 2 - 6), weights_text(w) if w else "no pref.", fill="black")
        for j, r in enumerate(mine):
            with Image.open(out / r["image"]) as im:
                tile = im.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            grid.paste(tile, (label_w + j * cell, i * cell))
    path = out / "grid.png"
    grid.save(path)
    return path
