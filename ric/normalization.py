"""Reward normalization: z-scores with training-set statistics, saved next to every artifact.

A RiC checkpoint is useless without the statistics it was trained with: the numbers in its
prompts are z-scores under them, and the preference mapping needs the range [low, high] of each
normalized reward. `RewardStats` holds both and round-trips through plain JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ric.artifacts import atomic_write_text

STATS_FILE = "reward_stats.json"
RANGE_SOURCES = ("gaussian", "data")
# Quantile levels stored for the `quantile` mapping and the MORS 0.7-quantile filter; dense in
# the tails because the mapping asks for very high quantiles (0.9999999 in the released code).
QUANTILE_LEVELS = (
    [0.0, 0.0001, 0.001, 0.005]
    + [round(q, 2) for q in np.arange(0.01, 1.0, 0.01)]
    + [0.995, 0.999, 0.9999, 0.9999999, 1.0]
)


def as_reward_matrix(raw, n_rewards: int | None = None, what: str = "rewards") -> np.ndarray:
    """Validate a (n_samples, n_rewards) array of finite floats; a 1-D input is one sample."""
    try:
        arr = np.asarray(raw, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be numbers in a (samples, rewards) array") from e
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D (samples, rewards), got shape {arr.shape}")
    if n_rewards is not None and arr.shape[1] != n_rewards:
        raise ValueError(f"{what} have {arr.shape[1]} columns, expected {n_rewards}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contain NaN or infinite values")
    return arr


def parse_range_quantiles(range_quantiles, n_rewards: int) -> np.ndarray:
    """[lo, hi] or one [lo, hi] per reward -> (n_rewards, 2) array, checked."""
    try:
        arr = np.asarray(range_quantiles, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"range_quantiles must be [lo, hi] or one [lo, hi] per reward, got {range_quantiles!r}"
        ) from e
    if arr.shape == (2,):
        arr = np.tile(arr, (n_rewards, 1))
    if arr.shape != (n_rewards, 2):
        raise ValueError(
            f"range_quantiles must be [lo, hi] or {n_rewards} [lo, hi] pairs (one per reward), "
            f"got {range_quantiles!r}"
        )
    if (
        not np.all(np.isfinite(arr))
        or np.any(arr[:, 0] < 0)
        or np.any(arr[:, 1] > 1)
        or np.any(arr[:, 0] >= arr[:, 1])
    ):
        raise ValueError(f"range_quantiles must satisfy 0 <= lo < hi <= 1, got {arr.tolist()}")
    return arr


def compact_range(pairs: np.ndarray) -> list:
    """(n_rewards, 2) -> [lo, hi] when every reward shares it, else the per-reward pairs."""
    if np.all(pairs == pairs[0]):
        return [float(pairs[0, 0]), float(pairs[0, 1])]
    return pairs.tolist()


@dataclass
class RewardStats:
    """Per-reward normalization statistics and the preference-mapping range.

    mean, std: training-set mean and population std (np.std, ddof=0) of the raw rewards.
    quantile_levels, quantiles: quantiles of the NORMALIZED training rewards, quantiles[i][k]
        for reward i at level quantile_levels[k].
    low, high: the range of normalized reward i used by the preference mapping.
    range_source: where low/high came from: "gaussian" (min/max of 50,000 standard-normal
        draws, about -4 and +4, as the released LLM code did) or "data" (quantiles
        `range_quantiles` of the normalized training rewards, as the released diffusion code;
        [lo, hi] for every reward or one [lo, hi] pair per reward).
    """

    names: list[str]
    mean: list[float]
    std: list[float]
    low: list[float]
    high: list[float]
    range_source: str = "data"
    range_quantiles: list = field(default_factory=lambda: [0.0, 1.0])
    quantile_levels: list[float] = field(default_factory=lambda: list(QUANTILE_LEVELS))
    quantiles: list[list[float]] = field(default_factory=list)
    n_samples: int = 0

    def __post_init__(self) -> None:
        n = len(self.names)
        if n < 1 or len(set(self.names)) != n:
            raise ValueError(f"reward names must be non-empty and unique, got {self.names}")
        for key in ("mean", "std", "low", "high"):
            if len(getattr(self, key)) != n:
                raise ValueError(f"{key} has {len(getattr(self, key))} values for {n} rewards")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if any(lo >= hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise ValueError(f"low must be below high, got low={self.low} high={self.high}")
        if self.range_source not in RANGE_SOURCES:
            raise ValueError(f"range_source must be one of {RANGE_SOURCES}")

    @classmethod
    def fit(
        cls,
        raw,
        names: Sequence[str],
        range_source: str = "data",
        range_quantiles: Sequence = (0.0, 1.0),
        seed: int = 0,
    ) -> RewardStats:
        """Statistics of raw rewards, shape (n_samples, n_rewards)."""
        arr = as_reward_matrix(raw, len(names), "raw rewards")
        if arr.shape[0] < 2:
            raise ValueError("need at least 2 samples to normalize rewards")
        mean, std = arr.mean(axis=0), arr.std(axis=0)
        if np.any(std == 0):
            flat = [n for n, s in zip(names, std, strict=True) if s == 0]
            raise ValueError(f"rewards {flat} are constant on this data: cannot normalize them")
        z = (arr - mean) / std
        levels = np.asarray(QUANTILE_LEVELS)
        quantiles = np.quantile(z, levels, axis=0).T
        pairs = parse_range_quantiles(range_quantiles, len(names))
        if range_source == "gaussian":
            draws = np.random.default_rng(seed).standard_normal(50_000)
            low, high = np.full(len(names), draws.min()), np.full(len(names), draws.max())
        elif range_source == "data":
            low, high = np.array([np.quantile(z[:, i], q) for i, q in enumerate(pairs)]).T
        else:
            raise ValueError(f"range_source must be one of {RANGE_SOURCES}, got {range_source!r}")
        return cls(
            names=list(names),
            mean=mean.tolist(),
            std=std.tolist(),
            low=low.tolist(),
            high=high.tolist(),
            range_source=range_source,
            range_quantiles=compact_range(pairs),
            quantile_levels=levels.tolist(),
            quantiles=quantiles.tolist(),
            n_samples=int(arr.shape[0]),
        )

    @property
    def n_rewards(self) -> int:
        return len(self.names)

    def normalize(self, raw) -> np.ndarray:
        """z-scores of raw rewards (n_samples, n_rewards) or one (n_rewards,) vector."""
        arr = np.asarray(raw)
        out = (as_reward_matrix(raw, self.n_rewards) - self.mean) / np.asarray(self.std)
        return out[0] if arr.ndim == 1 else out

    def denormalize(self, z) -> np.ndarray:
        arr = np.asarray(z)
        out = as_reward_matrix(z, self.n_rewards) * np.asarray(self.std) + self.mean
        return out[0] if arr.ndim == 1 else out

    def quantile(self, level: float | Sequence[float]) -> np.ndarray:
        """Per-reward quantile of the normalized training rewards, interpolated between the
        stored levels. A scalar level gives one value per reward; a sequence gives one level
        per reward."""
        if not self.quantiles:
            raise ValueError("these stats hold no quantiles (fit them from data)")
        lv = np.broadcast_to(np.asarray(level, dtype=float), (self.n_rewards,))
        if np.any((lv < 0) | (lv > 1)) or not np.all(np.isfinite(lv)):
            raise ValueError(f"quantile levels must be in [0, 1], got {lv.tolist()}")
        grid = np.asarray(self.quantile_levels)
        return np.array([np.interp(lv[i], grid, q) for i, q in enumerate(self.quantiles)])

    def with_range(self, range_quantiles: Sequence) -> RewardStats:
        """The same statistics with the mapping range moved to other quantiles of the training
        rewards (read from the stored quantiles): an inference-time choice, no retraining.
        A narrower range keeps the desired rewards where the training data is dense.

        range_quantiles: [lo, hi] for every reward, or one [lo, hi] pair per reward (a model
        may respond to one reward over a wider range than to another)."""
        pairs = parse_range_quantiles(range_quantiles, self.n_rewards)
        lo, hi = pairs[:, 0], pairs[:, 1]
        d = self.to_dict()
        d.update(
            low=self.quantile(lo).tolist(),
            high=self.quantile(hi).tolist(),
            range_source="data",
            range_quantiles=compact_range(pairs),
        )
        return RewardStats.from_dict(d)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RewardStats:
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        """Write as JSON; a directory gets `reward_stats.json` inside it."""
        path = Path(path)
        if path.is_dir():
            path = path / STATS_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RewardStats:
        path = Path(path)
        if path.is_dir():
            path = path / STATS_FILE
        if not path.exists():
            raise FileNotFoundError(f"no reward statistics at {path}")
        return cls.from_dict(json.loads(path.read_text()))
