"""The embedded backend: a small prompted, reward-conditioned UNet trained from scratch on a CPU.

Conditioning, the RiC way with an embedding in place of text: the caption's subject (parsed
by ric.image.data.subject_index) gets a learned vector, the rounded reward z-scores go
through a small MLP, and their sum enters the UNet's time embedding
(``class_embed_type="identity"``). Training drops caption and rewards together 10% of the
time (classifier-free guidance) and, with `reward_dropout`, the rewards alone, so that
"the caption without preference" is a condition the model knows: the unconditioned reference.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ric.artifacts import RicMeta, read_json, write_json
from ric.image.recipe import ImageRecipe, drop_masks, round_rewards
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

EMBEDDED_BASE = "ric-embedded-unet"  # base_model of the embedded backend: no base to download
CONDITIONER_FILE = "conditioner.safetensors"
CLASSIFIER_DIR = "classifier"


class RewardConditioner(nn.Module):
    """(rewards, null flag, subject) -> an embedding added to the UNet's time embedding.

    The null condition is zeros with the flag set, so "no preference" is a point the model
    learns, not a reward value of 0; subject index n_subjects means "no caption". The reward
    MLP's last layer starts at zero: an untrained conditioner ignores the rewards.
    """

    def __init__(self, n_rewards: int, dim: int, n_subjects: int = 0) -> None:
        super().__init__()
        self.n_rewards, self.n_subjects = n_rewards, n_subjects
        self.net = nn.Sequential(nn.Linear(n_rewards + 1, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)
        self.subject = nn.Embedding(n_subjects + 1, dim) if n_subjects else None
        if self.subject is not None:
            nn.init.normal_(self.subject.weight, std=0.1)

    def forward(
        self, rewards: torch.Tensor, null: torch.Tensor, subject: torch.Tensor | None = None
    ) -> torch.Tensor:
        null = null.to(rewards.dtype)[:, None]
        emb = self.net(torch.cat([rewards * (1.0 - null), null], dim=1))
        if self.subject is not None:
            if subject is None:
                subject = torch.full((len(rewards),), self.n_subjects, device=rewards.device)
            emb = emb + self.subject(subject)
        return emb


class RewardUNet(nn.Module):
    """UNet2DModel (class_embed_type="identity") conditioned through a RewardConditioner."""

    def __init__(self, unet, conditioner: RewardConditioner) -> None:
        super().__init__()
        self.unet, self.conditioner = unet, conditioner

    def forward(self, x, t, rewards, null, subject=None) -> torch.Tensor:
        return self.unet(x, t, class_labels=self.conditioner(rewards, null, subject)).sample

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        self.unet.save_pretrained(folder / "unet", safe_serialization=True)
        state = {k: v.detach().contiguous() for k, v in self.conditioner.state_dict().items()}
        save_file(state, str(folder / CONDITIONER_FILE))

    @classmethod
    def load(cls, folder: str | Path, n_rewards: int, n_subjects: int = 0) -> RewardUNet:
        from diffusers import UNet2DModel
        from safetensors.torch import load_file

        folder = Path(folder)
        unet = UNet2DModel.from_pretrained(folder / "unet", use_safetensors=True)
        conditioner = RewardConditioner(n_rewards, _time_embed_dim(unet), n_subjects)
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
    cond = RewardConditioner(n_rewards, _time_embed_dim(unet), len(recipe.subjects))
    return RewardUNet(unet, cond)


def make_noise_scheduler():
    """Training noise schedule; the cosine schedule suits small images better than linear."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")


def ddim_config(noise_sched) -> dict:
    from diffusers import DDIMScheduler

    return dict(DDIMScheduler.from_config(noise_sched.config).config)


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
    subjects: Sequence[int] | None = None,
    reward_guidance: float | None = None,
) -> np.ndarray:
    """n images (n, H, W, 3) uint8 for desired normalized rewards (None: no preference) and
    subject indices (None or n_subjects: no caption).

    With guidance g: eps = eps_null + g (eps_cond - eps_null), as in classifier-free guidance,
    where null drops caption and rewards; g = 1 runs the conditional model alone. With
    reward_guidance g_r (a model trained with reward_dropout, desired rewards and a caption),
    caption and rewards get their own scales, as InstructPix2Pix does for its two conditions:
    eps = eps_null + g (eps_caption - eps_null) + g_r (eps_cond - eps_caption).
    """
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(num_inference_steps)
    device = next(model.parameters()).device
    size = model.unet.config.sample_size
    k, n_sub = model.conditioner.n_rewards, model.conditioner.n_subjects
    subj = torch.full((n,), n_sub, dtype=torch.long)
    if subjects is not None and n_sub:
        subj = torch.as_tensor(list(subjects), dtype=torch.long)
    gen = torch.Generator().manual_seed(int(seed if seed is not None else 0))
    x_all = torch.randn(n, 3, size, size, generator=gen)  # drawn at once: batch-size invariant
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    cond = torch.as_tensor(np.zeros(k) if desired is None else desired, dtype=torch.float32)
    bar = tqdm(total=n * len(sched.timesteps), desc="sampling", disable=not progress)
    for s in range(0, n, batch_size):
        x = x_all[s : s + batch_size].to(device)
        b = x.shape[0]
        sb = subj[s : s + batch_size].to(device)
        # One pass for each of (conditional, null) that guidance needs, batched together.
        has_cond = desired is not None or bool((sb != n_sub).any())
        two = has_cond and guidance_scale != 1
        null_r = torch.full((b,), desired is None, device=device)
        nulls = [null_r, torch.ones(b, dtype=torch.bool, device=device)]
        subs = [sb, torch.full_like(sb, n_sub)]
        if not has_cond:
            nulls, subs = nulls[1:], subs[1:]
        elif not two:
            nulls, subs = nulls[:1], subs[:1]
        three = reward_guidance is not None and desired is not None and n_sub > 0
        if three:  # (cond, null, caption only)
            nulls.append(torch.ones(b, dtype=torch.bool, device=device))
            subs.append(sb)
        null, sub = torch.cat(nulls), torch.cat(subs)
        rr = cond.to(device).expand(b, k).repeat(len(nulls), 1)
        for t in sched.timesteps:
            eps = model(x.repeat(len(nulls), 1, 1, 1), t.to(device), rr, null, sub)
            if three:
                e_c, e_u, e_p = eps.chunk(3)
                eps = e_u + guidance_scale * (e_p - e_u) + reward_guidance * (e_c - e_p)
            elif len(nulls) == 2:
                e_c, e_u = eps.chunk(2)
                eps = e_u + guidance_scale * (e_c - e_u)
            x = sched.step(eps, t, x).prev_sample
            bar.update(b)
        img = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        out[s : s + b] = img.permute(0, 2, 3, 1).cpu().numpy()
    bar.close()
    return out


def training_images(recipe: ImageRecipe, folder: Path | None) -> tuple:
    """(patches, subject labels or None, raw rewards) of the recipe, deterministic in its seed;
    reward models that ship with the model (the classifier) are read from `folder`."""
    from ric.image.data import make_patches, subject_patches, vivid_edit
    from ric.image.rewards import model_reward_kwargs, score_images

    if recipe.subjects:
        patches, labels = subject_patches(
            recipe.n_patches,
            recipe.image_size,
            recipe.seed,
            recipe.subjects,
            recipe.min_crop,
            progress=True,
        )
        captions = [recipe.subjects[i] for i in labels]
        if recipe.vivid_share > 0:
            patches, _ = vivid_edit(patches, recipe.vivid_share, recipe.vivid_strength, recipe.seed)
    else:
        photos = recipe.photos or None
        patches, labels = make_patches(
            recipe.n_patches,
            recipe.image_size,
            recipe.seed,
            photos,
            recipe.min_crop,
            progress=True,
        )
        captions = [""] * len(patches)
    raw = score_images(
        recipe.rewards,
        list(patches),
        captions,
        model_reward_kwargs(recipe.rewards, recipe.reward_kwargs, folder),
        progress=True,
    )
    return patches, labels if recipe.subjects else None, raw


def reward_conflict(raw: np.ndarray, labels: np.ndarray | None) -> dict:
    """Spearman correlation of the first two rewards, overall and within each subject
    (negative = they pull against each other)."""
    from ric.data import spearman_matrix

    out = {"spearman": round(float(spearman_matrix(raw[:, :2])[0, 1]), 3)}
    if labels is not None:
        per = [spearman_matrix(raw[labels == i, :2])[0, 1] for i in np.unique(labels)]
        out["spearman_within_subject_mean"] = round(float(np.nanmean(per)), 3)
        # one per subject, in label order (the model's `subjects`)
        out["spearman_within_subject"] = [round(float(v), 3) for v in per]
    return out


def _classifier(recipe: ImageRecipe, out: Path) -> dict | None:
    """Train (or reuse) out/classifier when a reward needs it; returns its report."""
    from ric.image.classifier import CONFIG, train_classifier

    if "compliance" not in recipe.rewards:
        return None
    folder = out / CLASSIFIER_DIR
    if not (folder / CONFIG).exists():
        clf, report = train_classifier(
            recipe.subjects,
            recipe.image_size,
            recipe.classifier_patches,
            recipe.classifier_steps,
            recipe.seed,
            recipe.min_crop if recipe.classifier_min_crop is None else recipe.classifier_min_crop,
            progress=True,
            wide_min_crop=recipe.min_crop,
        )
        clf.save(folder, report)
    return read_json(folder / CONFIG)


def train(recipe: ImageRecipe, callback: Callback | None = None) -> Path:
    """Train the prompted reward-conditioned UNet on skimage patches; returns out_dir/model."""
    if (done := already_trained(recipe)) is not None:
        return done
    torch.manual_seed(recipe.seed)
    out = Path(recipe.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    # 1. The subject classifier (compliance), then the patch bank and its rewards; all
    # deterministic, so a resumed run sees the same patches and statistics.
    clf_report = _classifier(recipe, out)
    patches, labels, raw = training_images(recipe, out)
    stats = fit_stats(recipe, raw)
    stats.save(out)
    z = torch.as_tensor(round_rewards(stats.normalize(raw)), dtype=torch.float32)
    n_sub = len(recipe.subjects)
    subj = torch.as_tensor(labels if labels is not None else np.zeros(len(patches), int))
    data_seconds = time.time() - t0
    device = train_device(recipe)
    pixels = torch.as_tensor(patches).permute(0, 3, 1, 2).contiguous()  # uint8, (n, 3, H, W)

    # 2. Model and noise schedule.
    model = build_reward_unet(recipe, len(recipe.rewards)).to(device)
    noise_sched = make_noise_scheduler()
    alphas = noise_sched.alphas_cumprod.to(device)

    def loss_fn(step: int, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        idx = torch.as_tensor(rng.integers(0, len(pixels), recipe.batch_size))
        x0 = (pixels[idx].float() / 127.5 - 1.0).to(device)
        drop_all, drop_r = drop_masks(len(idx), recipe.cond_dropout, recipe.reward_dropout, rng)
        null = torch.as_tensor(drop_all | drop_r, device=device)
        sub = torch.where(torch.as_tensor(drop_all), n_sub, subj[idx]).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, len(alphas), (len(idx),), generator=gen).to(device)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        return nn.functional.mse_loss(model(xt, t, z[idx].to(device), null, sub), noise)

    # 3. Train (resumes from out_dir/checkpoint), 4. save the EMA weights with their metadata.
    summary = train_loop(recipe, model, loss_fn, callback)
    summary["data_seconds"] = round(data_seconds, 1)
    summary["reward_conflict_training"] = reward_conflict(raw, labels)
    model.cpu()
    scheduler_config = ddim_config(make_noise_scheduler())
    extra = {
        "backend": "embedded",
        "image_size": recipe.image_size,
        "subjects": list(recipe.subjects),
        "classifier": clf_report,
        "train": summary,
        "recipe": dataclasses.asdict(recipe),
    }
    meta = image_meta(recipe, stats, EMBEDDED_BASE, extra)

    def write(folder: Path) -> None:
        from diffusers import DDIMScheduler

        model.save(folder)
        DDIMScheduler.from_config(scheduler_config).save_pretrained(folder / "scheduler")
        if clf_report is not None:
            shutil.copytree(out / CLASSIFIER_DIR, folder / CLASSIFIER_DIR)
        stats.save(folder)
        meta.save(folder)

    folder = finish(out / "model", write)
    # Sampling speed of the saved model, as the app will see it (threads as in this run).
    from ric.image.sampling import SteerableImageModel, time_generation

    summary["sample_timing"] = time_generation(SteerableImageModel.load(folder))
    meta.extra["train"] = summary
    meta.save(folder)
    write_json(out / TRAIN_SUMMARY, summary)
    return folder


class EmbeddedBackend:
    """Sampling from a trained embedded model folder."""

    train = staticmethod(train)

    def __init__(self, folder: Path, meta: RicMeta, device: torch.device, base: bool = False):
        self.subjects = list(meta.extra.get("subjects", []))
        n_rewards = len(meta.reward_names)
        self.model = RewardUNet.load(folder, n_rewards, len(self.subjects)).to(device)
        self.scheduler_config = read_json(folder / "scheduler" / "scheduler_config.json")
        self.size = meta.extra.get("image_size")
        # Separate reward guidance (sample_embedded); None: the paper's single guidance.
        self.reward_guidance = meta.extra.get("reward_guidance_scale")

    def subject_ids(self, captions: Sequence[str]) -> list[int] | None:
        """Each caption's subject index (n_subjects: none named); None for an unprompted model."""
        from ric.image.data import subject_index

        if not self.subjects:
            return None
        found = [subject_index(c, self.subjects) for c in captions]
        return [len(self.subjects) if i is None else i for i in found]

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
                subjects=self.subject_ids(captions),
                reward_guidance=self.reward_guidance,
            )
        )


def probe_timing(recipe: ImageRecipe, steps: int = 5, n_images: int = 4) -> dict:
    """Seconds per training step and per batch of n_images for the recipe's embedded model,
    measured on a few real patches (no full training): the basis of the budget estimates.
    Uses torch's current thread count (set it first; recipe.threads is not applied)."""
    from ric.image.data import make_patches

    model = build_reward_unet(recipe, len(recipe.rewards))
    noise_sched = make_noise_scheduler()
    alphas = noise_sched.alphas_cumprod
    patches, _ = make_patches(recipe.batch_size, recipe.image_size, recipe.seed)
    x0 = torch.as_tensor(patches).permute(0, 3, 1, 2).float() / 127.5 - 1
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
    t0 = time.perf_counter()
    sample_embedded(
        model,
        ddim_config(noise_sched),
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
