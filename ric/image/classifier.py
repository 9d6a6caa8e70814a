"""The subject classifier behind the `compliance` reward: which photograph a patch shows.

A 5-layer CNN (about 0.15M parameters) trained on patches cut with seeds the diffusion model
never sees, with augmentations that make it read content rather than pixel noise (brightness
and contrast jitter, blur, noise: generated images are softer than photographs). It ships in
the model folder (classifier/: safetensors + classifier.json with subjects and accuracy).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ric.artifacts import read_json, write_json

WEIGHTS = "classifier.safetensors"
CONFIG = "classifier.json"


class SubjectClassifier(nn.Module):
    def __init__(self, subjects: Sequence[str], size: int = 32, width: int = 32) -> None:
        super().__init__()
        self.subjects, self.size, self.width = list(subjects), size, width
        w = width

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]

        self.net = nn.Sequential(
            *block(3, w),
            *block(w, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            *block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * w, len(self.subjects)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for pixels in [-1, 1], shape (n, 3, size, size)."""
        return self.net(x)

    def to_pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """HxWx3 uint8 arrays -> (n, 3, size, size) in [-1, 1] (box-resized when needed)."""
        from PIL import Image

        out = []
        for arr in images:
            if arr.shape[:2] != (self.size, self.size):
                img = Image.fromarray(arr).resize((self.size, self.size), Image.Resampling.BOX)
                arr = np.asarray(img)
            out.append(arr)
        x = torch.as_tensor(np.stack(out)).permute(0, 3, 1, 2).float()
        return x / 127.5 - 1.0

    @torch.no_grad()
    def probabilities(self, images: Sequence[np.ndarray], batch: int = 256) -> np.ndarray:
        """Softmax over the subjects, shape (n, n_subjects)."""
        self.eval()
        device = next(self.parameters()).device
        parts = []
        for s in range(0, len(images), batch):
            x = self.to_pixels(images[s : s + batch]).to(device)
            parts.append(self(x).softmax(-1).cpu().numpy())
        return np.concatenate(parts).astype(np.float64)

    @torch.no_grad()
    def log_odds(self, images: Sequence[np.ndarray], labels: Sequence[int], batch=256):
        """log(p / (1 - p)) of each image's label: its logit minus the logsumexp of the
        others (exact, no 1 - p cancellation when p is near 1)."""
        self.eval()
        device = next(self.parameters()).device
        out = []
        for s in range(0, len(images), batch):
            logits = self(self.to_pixels(images[s : s + batch]).to(device)).cpu().double()
            y = torch.as_tensor(list(labels[s : s + batch]))
            own = logits[torch.arange(len(y)), y]
            others = logits.scatter(1, y[:, None], float("-inf")).logsumexp(1)
            out.append((own - others).numpy())
        return np.concatenate(out)

    def save(self, folder: str | Path, report: dict | None = None) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS))
        cfg = {"subjects": self.subjects, "size": self.size, "width": self.width}
        write_json(folder / CONFIG, {**cfg, **(report or {})})

    @classmethod
    def load(cls, folder: str | Path) -> SubjectClassifier:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / CONFIG).exists():
            raise FileNotFoundError(f"{folder / CONFIG} not found: no subject classifier there")
        cfg = read_json(folder / CONFIG)
        clf = cls(cfg["subjects"], cfg["size"], cfg["width"])
        clf.load_state_dict(load_file(str(folder / WEIGHTS)))
        return clf.eval()


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Brightness/contrast jitter (+-20%), a Gaussian blur (sigma 0..1.2) on half the batch,
    and pixel noise (std 0..0.05): the ways a generated image differs from a photograph."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=gen)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (0.8 + 0.4 * u[:, 0]).view(-1, 1, 1, 1) + mean
    x = x + (0.4 * u[:, 1] - 0.2).view(-1, 1, 1, 1)
    sigma = float(1.2 * u[0, 2])
    if sigma > 0.2:
        k = torch.arange(-2, 3, dtype=torch.float32)
        g = torch.exp(-(k**2) / (2 * sigma**2))
        g = g / g.sum()
        kernel = (g[:, None] * g[None, :]).expand(3, 1, 5, 5)
        blurred = nn.functional.conv2d(nn.functional.pad(x, (2,) * 4, "reflect"), kernel, groups=3)
        half = (torch.arange(n) % 2 == 0).view(-1, 1, 1, 1)
        x = torch.where(half, blurred, x)
    x = x + torch.randn(x.shape, generator=gen) * 0.05 * u[:, 3].view(-1, 1, 1, 1)
    return x.clamp(-1, 1)


def train_classifier(
    subjects: Sequence[str],
    size: int = 32,
    n_patches: int = 12000,
    steps: int = 1500,
    seed: int = 0,
    min_crop: float = 0.0,
    batch_size: int = 64,
    progress: bool = False,
    wide_min_crop: float | None = None,
) -> tuple[SubjectClassifier, dict]:
    """Train on patches cut with seed + 1000, test on 2,000 cut with seed + 2000 (the
    diffusion model trains on seed itself); returns the classifier and its report.

    With `wide_min_crop` below `min_crop` (the diffusion model's own crops), the report also
    gives accuracy and median log-odds on 2,000 such crops by crop side: how much lower a
    close-up scores than the whole subject."""
    from tqdm.auto import tqdm

    from ric.image.data import subject_patches

    t0 = time.time()
    torch.manual_seed(seed)
    train, y = subject_patches(n_patches, size, seed + 1000, subjects, min_crop)
    test, y_test = subject_patches(2000, size, seed + 2000, subjects, min_crop)
    clf = SubjectClassifier(subjects, size)
    x = clf.to_pixels(list(train))
    yt = torch.as_tensor(y)
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    clf.train()
    for _ in tqdm(range(steps), desc="subject classifier", disable=not progress):
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        loss = nn.functional.cross_entropy(clf(augment(x[idx], gen)), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    pred = clf.probabilities(list(test)).argmax(1)
    per = {s: round(float((pred[y_test == i] == i).mean()), 3) for i, s in enumerate(subjects)}
    report = {
        "test_accuracy": round(float((pred == y_test).mean()), 4),
        "test_accuracy_per_subject": per,
        "test_patches": len(test),
        "train_patches": n_patches,
        "steps": steps,
        "min_crop": min_crop,
        "chance": round(1 / len(subjects), 4),
        "train_seconds": round(time.time() - t0, 1),
    }
    if wide_min_crop is not None and wide_min_crop < min_crop:
        report["wide_crops"] = _wide_crop_report(clf, subjects, size, seed, wide_min_crop)
    return clf.eval(), report


def _wide_crop_report(clf, subjects, size: int, seed: int, min_crop: float) -> dict:
    """Accuracy and median log-odds on 2,000 crops from `min_crop` up (seed + 3000), overall
    and in three bands of crop side over the photograph's short side."""
    from ric.image.data import subject_patches

    patches, y, sides = subject_patches(2000, size, seed + 3000, subjects, min_crop, sides=True)
    clf.eval()
    right = clf.probabilities(list(patches)).argmax(1) == y
    odds = clf.log_odds(list(patches), y)
    bands = {}
    for lo, hi in ((0.0, 0.25), (0.25, 0.5), (0.5, 1.01)):
        m = (sides >= lo) & (sides < hi)
        if m.any():
            bands[f"{lo:g}-{min(hi, 1):g}"] = {
                "n": int(m.sum()),
                "accuracy": round(float(right[m].mean()), 3),
                "median_log_odds": round(float(np.median(odds[m])), 2),
            }
    return {
        "min_crop": min_crop,
        "accuracy": round(float(right.mean()), 4),
        "median_log_odds": round(float(np.median(odds)), 2),
        "by_crop_side": bands,
    }
