"""The image recipe (one dataclass for both backends) and the RiC conditioning of images.

The paper's form (docs/METHOD.md section 7): the caption plus `` <rm1> s1 <rm2> s2`` with the
z-scores rounded to 1 decimal, and 10% of samples with neither (classifier-free guidance).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ric.conditioning import ConditioningFormat, format_reward_tags, sanitize_user_text
from ric.config import field

IMAGE_TAG = "<rm{i}>"


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


def drop_masks(
    n: int, p_all: float, p_rewards: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(drop caption and rewards, drop the rewards only), disjoint, from one uniform draw.

    The first is the paper's CFG dropout; the second teaches the prompted embedded model the
    caption alone, which is its "no preference" reference (one draw, so p_rewards = 0 leaves
    the paper's masks unchanged).
    """
    u = rng.random(n)
    return u < p_all, (u >= p_all) & (u < p_all + p_rewards)


@dataclasses.dataclass
class ImageRecipe:
    # what to train
    kind: str = field("embedded", "backend, a name in ric.image.backends.BACKENDS")
    out_dir: str = field("runs/image", "output folder: model/, checkpoint/, logs")
    rewards: list = field(["compliance", "aesthetic_composite"], "image rewards, in tag order")
    reward_kwargs: dict = field({}, "per-reward factory kwargs, e.g. {compressibility: {size: 64}}")
    # RiC
    cond_dropout: float = field(0.1, "probability of dropping caption and rewards (CFG)")
    reward_dropout: float = field(
        0.0, "embedded: probability of dropping the rewards only (caption kept)"
    )
    mapping: str = field("quantile", "preference mapping stored with the model")
    range_source: str = field("data", "mapping range: 'data' quantiles or 'gaussian'")
    range_quantiles: list = field([0.0, 1.0], "quantiles of the normalized rewards for low/high")
    guidance_scale: float = field(3.0, "default classifier-free guidance at sampling")
    reward_guidance_scale: float | None = field(
        None, "embedded: default separate guidance of the reward tags (None: single guidance)"
    )
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
    subjects: list = field([], "embedded: prompted subjects (ric.image.data.SUBJECTS); [] = none")
    photos: list = field([], "embedded, unprompted: skimage photographs (default: all)")
    min_crop: float = field(
        0.0,
        "embedded: smallest crop side as a fraction of the photo's short side (0: the "
        "image size in pixels)",
    )
    vivid_share: float = field(
        0.0, "embedded, prompted: share of patches given a random vivid edit (data.vivid_edit)"
    )
    vivid_strength: float = field(3.0, "embedded: the strongest vivid edit (1 = none)")
    # embedded backend: the compliance classifier (trained first, shipped with the model)
    classifier_patches: int = field(12000, "embedded: held-out patches to train it on")
    classifier_steps: int = field(1500, "embedded: its optimizer steps (batch 64)")
    classifier_min_crop: float | None = field(
        None,
        "embedded: smallest crop it learns from (None: min_crop). Larger than min_crop, "
        "compliance measures whether the whole subject shows, and close-ups score low",
    )
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
        from ric.image.backends import BACKENDS
        from ric.image.data import SUBJECTS
        from ric.image.rewards import PROMPTED_REWARDS, is_image_reward

        if self.kind not in BACKENDS:
            raise ValueError(f"kind must be one of {sorted(BACKENDS)}, got {self.kind!r}")
        if len(self.rewards) < 2 or len(set(self.rewards)) != len(self.rewards):
            raise ValueError(f"need at least 2 distinct rewards, got {self.rewards}")
        for name in self.rewards:
            if not is_image_reward(name):
                raise ValueError(f"{name!r} is not an image reward (see ric.image.rewards.REWARDS)")
        unknown = set(self.reward_kwargs) - set(self.rewards)
        if unknown:
            raise ValueError(f"reward_kwargs for rewards not trained on: {sorted(unknown)}")
        if self.kind == "embedded":
            bad = [s for s in self.subjects if s not in SUBJECTS]
            if bad:
                raise ValueError(f"unknown subjects {bad}; choose from {list(SUBJECTS)}")
            prompted = [n for n in self.rewards if n in PROMPTED_REWARDS]
            if prompted and len(self.subjects) < 2:
                raise ValueError(f"{prompted} score the prompted subject: list >= 2 subjects")
        for key in ("cond_dropout", "reward_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        if not 0.0 <= self.vivid_share <= 1.0 or self.vivid_strength < 1.0:
            raise ValueError(
                f"vivid_share must be in [0, 1] and vivid_strength >= 1, got "
                f"{self.vivid_share} and {self.vivid_strength}"
            )
        for key in ("min_crop", "classifier_min_crop"):
            value = getattr(self, key)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{key} is a fraction of the photo's short side, got {value}")
        if self.cond_dropout + self.reward_dropout >= 1.0:
            raise ValueError("cond_dropout + reward_dropout must be < 1")
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
