"""SteerableImageModel: a trained RiC image model with its metadata, preference in, images and
rewards out. The image counterpart of ric.steering.SteerableModel, with the same small interface
(reward_names, desired(weights), score(prompts, outputs), load(folder)), so one evaluator and one
app component drive both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ric.artifacts import RicMeta
from ric.conditioning import ConditioningFormat
from ric.image.backends import BACKENDS
from ric.image.recipe import round_rewards
from ric.image.rewards import model_reward_kwargs
from ric.mapping import preference_to_rewards
from ric.normalization import RewardStats
from ric.rewards import get_reward_fn


class SteerableImageModel:
    """A RiC image model with its metadata: preference weights in, images and rewards out.

    The image counterpart of ric.steering.SteerableModel. ``base=True`` gives the reference
    point: the embedded model without reward tags (the caption alone; the null condition for
    an unprompted model), or the SD base pipeline without the RiC weights and tags.
    """

    def __init__(
        self, backend, meta: RicMeta, conditioned: bool = True, folder: str | Path | None = None
    ):
        self.backend, self.meta, self.conditioned = backend, meta, conditioned
        self.folder = Path(folder) if folder else None
        self.stats = RewardStats.from_dict(meta.stats)
        self.fmt = ConditioningFormat.from_dict(meta.conditioning)
        # The recipe's reward kwargs, plus the reward models that ship in the folder.
        kwargs = model_reward_kwargs(meta.reward_names, meta.extra.get("reward_kwargs", {}), folder)
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
        backend = BACKENDS[meta.extra.get("backend", "embedded")](folder, meta, dev, base)
        return cls(backend, meta, conditioned=not base, folder=folder)

    @property
    def reward_names(self) -> list[str]:
        return list(self.meta.reward_names)

    @property
    def subjects(self) -> list[str]:
        """The subjects a prompt may name ([] for an unprompted model)."""
        return list(self.meta.extra.get("subjects", []))

    def check_prompts(self, captions: Sequence[str]) -> None:
        """A prompted embedded model draws only its subjects: a caption must name one."""
        from ric.image.data import subject_index

        if not self.subjects:
            return
        bad = [c for c in captions if subject_index(c, self.subjects) is None]
        if bad:
            raise ValueError(
                f"the prompt {bad[0]!r} names none of this model's subjects: "
                f"{', '.join(self.subjects)}"
            )

    def user_prompt(self, prompt: str | None, max_chars: int = 200) -> str:
        """A user's prompt checked for this model: text, at most max_chars, naming one of the
        subjects of a prompted model; empty means the first subject (or no caption)."""
        from ric.validation import check_text

        prompt = check_text("" if prompt is None else prompt, "prompt").strip()
        if len(prompt) > max_chars:
            raise ValueError(f"the prompt has {len(prompt)} characters; at most {max_chars}")
        if not prompt and self.subjects:
            prompt = self.subjects[0]
        self.check_prompts([prompt])
        return prompt

    def set_reward_guidance(self, scale: float | None) -> None:
        """Guide the reward tags with their own scale (embedded backend; None: the paper's
        single guidance scale). See ric.image.embedded.sample_embedded."""
        if not hasattr(self.backend, "reward_guidance"):
            raise ValueError(f"the {self.backend_name} backend has no separate reward guidance")
        self.backend.reward_guidance = scale

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

        prompt: one caption for all n images, or n captions; a prompted embedded model needs
        each to name one of its `subjects`. weights=None (or a base model) samples without
        reward tags (the caption alone).
        """
        from PIL import Image

        if not isinstance(n, int) or not 1 <= n <= 256:
            raise ValueError(f"n must be an int in [1, 256], got {n!r}")
        captions = [prompt] * n if isinstance(prompt, str) else list(prompt)
        if len(captions) != n or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"prompt must be one str or {n} str")
        self.check_prompts(captions)
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
    prompt = model.subjects[0] if model.subjects else ""
    model.generate(weights, n=1, seed=0, num_inference_steps=2, prompt=prompt)  # warm-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        model.generate(weights, n=n, seed=r, prompt=prompt)
        times.append(time.perf_counter() - t0)
    return {
        "n_images": n,
        "seconds": round(min(times), 3),
        "num_inference_steps": model.meta.extra.get("num_inference_steps"),
        "guidance_scale": model.meta.extra.get("guidance_scale"),
        "reward_guidance_scale": model.meta.extra.get("reward_guidance_scale"),
        "threads": torch.get_num_threads(),
    }
