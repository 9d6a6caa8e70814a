"""The training loop both image backends share: AdamW, warmup + cosine, EMA, gradient
accumulation, atomic checkpoints and exact resume; `train_image_model` picks the backend.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ric.artifacts import RicMeta, append_jsonl, read_json, read_jsonl, write_json, write_jsonl
from ric.image.recipe import ImageRecipe, image_format
from ric.normalization import RewardStats
from ric.runlog import cpu_seconds

TRAIN_SUMMARY = "train_summary.json"
CHECKPOINT = "checkpoint"


def lr_factor(step: int, warmup: int, total: int) -> float:
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


def save_checkpoint(
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


def checkpoint_dir(out: Path) -> Path | None:
    for folder in (out / CHECKPOINT, out / f"{CHECKPOINT}.old"):  # .old: killed mid-swap
        if (folder / "state.json").exists():
            return folder
    return None


def load_checkpoint(out: Path, module: nn.Module, opt, ema: dict | None) -> dict:
    """Restore the last checkpoint into module/opt/ema; returns its state ({} if none)."""
    from safetensors.torch import load_file

    folder = checkpoint_dir(out)
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


def already_trained(recipe: ImageRecipe) -> Path | None:
    """out_dir/model when it was saved from a checkpoint at max_steps: a rerun has nothing to
    do. A model folder saved earlier (a run killed between its last checkpoint and the save,
    or a folder copied from a shorter run to continue it) does not count: the rerun then
    trains no step and saves the checkpoint's weights."""
    out = Path(recipe.out_dir)
    folder = checkpoint_dir(out)
    model = out / "model"
    if folder is None or read_json(folder / "state.json")["step"] < recipe.max_steps:
        return None
    saved = read_json(model / "ric.json") if (model / "ric.json").exists() else {}
    if saved.get("extra", {}).get("train", {}).get("steps", 0) >= recipe.max_steps:
        print(f"{model} is already trained to step {recipe.max_steps}", flush=True)
        return model
    return None


def update_ema(ema: dict[str, torch.Tensor], module: nn.Module, decay: float, step: int) -> None:
    # Warm-up of the decay (as in diffusers' EMAModel): early weights are not averaged in long.
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in ema:
                ema[name].mul_(d).add_(p.detach(), alpha=1 - d)


def train_device(recipe: ImageRecipe) -> torch.device:
    return torch.device(recipe.device or ("cuda" if torch.cuda.is_available() else "cpu"))


StepFn = Callable[[int, np.random.Generator, torch.Generator], torch.Tensor]
Callback = Callable[[int, float, nn.Module], None]


def train_loop(
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
    state = load_checkpoint(out, module, opt, ema)
    start = state.get("step", 0)
    # Training time accumulated over resumed runs (up to each checkpoint).
    prior_wall, prior_cpu = state.get("train_seconds", 0.0), state.get("cpu_seconds", 0.0)
    log_file = out / "train_log.jsonl"
    logged = read_jsonl(log_file)
    if any(r["step"] > start for r in logged):  # rows the kill made stale: the steps rerun
        write_jsonl(log_file, [r for r in logged if r["step"] <= start])
    if start:
        print(f"resuming from step {start} ({out / CHECKPOINT})", flush=True)
    t0, c0 = time.time(), cpu_seconds()
    bar = tqdm(total=recipe.max_steps, initial=start, desc="training", unit="step")
    module.train()
    for step in range(start, recipe.max_steps):
        for g in opt.param_groups:
            g["lr"] = recipe.learning_rate * lr_factor(step, recipe.warmup_steps, recipe.max_steps)
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
            update_ema(ema, module, recipe.ema_decay, step)
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
                "cpu_seconds": round(prior_cpu + cpu_seconds() - c0, 1),
            }
            save_checkpoint(out, module, opt, spent, ema)
        if callback is not None:
            callback(done, total, module)
    bar.close()
    wall, cpu = time.time() - t0, cpu_seconds() - c0
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


def fit_stats(recipe: ImageRecipe, raw: np.ndarray) -> RewardStats:
    return RewardStats.fit(
        raw,
        list(recipe.rewards),
        range_source=recipe.range_source,
        range_quantiles=recipe.range_quantiles,
        seed=recipe.seed,
    )


def image_meta(recipe: ImageRecipe, stats: RewardStats, base_model: str, extra: dict) -> RicMeta:
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
            "reward_guidance_scale": recipe.reward_guidance_scale,
            "num_inference_steps": recipe.num_inference_steps,
            "cond_dropout": recipe.cond_dropout,
            **extra,
        },
    )


def finish(folder: Path, write: Callable[[Path], None]) -> Path:
    """Write the final model into folder.tmp, then swap it in: never a half-written model."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def train_image_model(recipe: ImageRecipe, callback: Callback | None = None) -> Path:
    """Train the recipe's backend (ric.image.backends.BACKENDS[recipe.kind]); rerunning the
    same recipe resumes a killed run.

    callback(step, loss, module) runs after every optimizer step (tests use it to inspect the
    model or to simulate a kill)."""
    from ric.image.backends import BACKENDS

    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    return BACKENDS[recipe.kind].train(recipe, callback)
