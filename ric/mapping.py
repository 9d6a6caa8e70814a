"""Preference weights -> desired (normalized) rewards, the inference half of RiC.

docs/METHOD.md section 6. With low_i/high_i the range of normalized reward i and N rewards:
- "ric" (the paper, released default "linf"): r_i = min(N w_i, 1) (high_i - low_i) + low_i.
  min(N w_i, 1) maximizes sum_i (w_i x_i - x_i^2 / (2N)) over the unit box: push the weighted
  reward up without asking for more than the data ever showed. The dominant reward gets high_i.
- "l2" (what the released evaluation called): r_i = w_i / ||w||_2 (high_i - low_i) + low_i.
- "linear": r_i = w_i (high_i - low_i) + low_i.
- "quantile" (released diffusion): reward i gets its training quantile min(N w_i, 1), capped at
  0.9999999, so the dominant reward gets a very high quantile.
- "typical" (the app's default): the "ric" formula with weight 0 meaning "not a priority"
  rather than "as low as possible": r_i = min(N w_i, 1) (high_i - m_i) + m_i, with m_i the
  median of reward i in the training data (its typical value). Under "ric", w = (0, 1) asks
  for the lowest positivity the data showed, and replies turn gloomy; here it asks for a
  typical one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ric.normalization import RewardStats

METHODS = ("ric", "l2", "linear", "quantile", "typical")
TOP_QUANTILE = 0.9999999


def check_weights(weights: Sequence[float], n: int | None = None) -> np.ndarray:
    """Validate preference weights and renormalize them to sum 1."""
    try:
        w = np.asarray(weights, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"weights must be a list of numbers, got {weights!r}") from e
    if w.ndim != 1:
        raise ValueError(f"weights must be a flat list, got shape {w.shape}")
    if n is not None and w.size != n:
        raise ValueError(f"expected {n} weights (one per reward), got {w.size}")
    if w.size < 2:
        raise ValueError(f"need at least 2 weights, got {w.size}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be finite, got {w.tolist()}")
    if np.any(w < 0):
        raise ValueError(f"weights must be non-negative, got {w.tolist()}")
    if w.sum() == 0:
        raise ValueError("weights are all zero: give at least one objective a positive weight")
    return w / w.sum()


def _check_range(low, high, n: int) -> tuple[np.ndarray, np.ndarray]:
    """low/high as (n,) arrays; a scalar applies to every reward."""
    try:
        lo = np.broadcast_to(np.asarray(low, dtype=float), (n,))
        hi = np.broadcast_to(np.asarray(high, dtype=float), (n,))
    except (TypeError, ValueError) as e:
        raise ValueError(f"low and high must be a number or {n} numbers each") from e
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("low and high must be finite")
    if np.any(lo >= hi):
        raise ValueError(f"low must be below high, got low={lo.tolist()} high={hi.tolist()}")
    return lo, hi


def preference_to_rewards(
    weights: Sequence[float],
    low: float | Sequence[float] | None = None,
    high: float | Sequence[float] | None = None,
    method: str = "ric",
    stats: RewardStats | None = None,
) -> np.ndarray:
    """Desired normalized rewards for preference weights (renormalized to sum 1).

    low/high default to the range stored in `stats`; the "quantile" method needs `stats`.

    >>> preference_to_rewards([0.3, 0.7], -3.9, 4.1).round(1).tolist()
    [0.9, 4.1]
    """
    if method not in METHODS:
        raise ValueError(f"unknown mapping method {method!r}; choose one of {METHODS}")
    n = stats.n_rewards if stats is not None else None
    w = check_weights(weights, n)
    n = w.size
    if method == "quantile":
        if stats is None:
            raise ValueError("the 'quantile' mapping needs the training RewardStats (stats=...)")
        return stats.quantile(np.minimum(n * w, TOP_QUANTILE))
    if low is None or high is None:
        if stats is None:
            raise ValueError("pass low and high, or stats holding the mapping range")
        low, high = stats.low, stats.high
    lo, hi = _check_range(low, high, n)
    if method == "typical":
        if stats is None:
            raise ValueError("the 'typical' mapping needs the training RewardStats (stats=...)")
        lo = np.clip(typical_rewards(stats), lo, hi)
        return np.minimum(n * w, 1.0) * (hi - lo) + lo
    if method == "ric":
        frac = np.minimum(n * w, 1.0)
    elif method == "l2":
        frac = w / np.linalg.norm(w)
    else:
        frac = w
    return frac * (hi - lo) + lo


def typical_rewards(stats: RewardStats) -> np.ndarray:
    """Each reward's median in the training data (normalized); 0, the mean, when the stats hold
    no quantiles."""
    return stats.quantile(0.5) if stats.quantiles else np.zeros(stats.n_rewards)


def simplex_grid(n_rewards: int, points: int | None = None) -> np.ndarray:
    """The evaluation sweep of docs/METHOD.md section 8.

    2 rewards: w_1 in {0, 0.1, ..., 1} (or `points` evenly spaced values). 3 rewards: 13 fixed
    vectors covering the corners, edge midpoints and thirds, and the centre of the simplex.
    """
    if n_rewards == 2:
        k = 11 if points is None else points
        if k < 2:
            raise ValueError(f"need at least 2 sweep points, got {k}")
        w1 = np.linspace(0.0, 1.0, k)
        return np.stack([w1, 1.0 - w1], axis=1)
    if n_rewards == 3:
        if points is not None:
            raise ValueError("--points applies to 2 objectives; 3 use the fixed 13-vector sweep")
        corners = np.eye(3)
        mids = np.array([[0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
        thirds = np.array([[2, 1, 0], [1, 2, 0], [2, 0, 1], [0, 2, 1], [1, 0, 2], [0, 1, 2]]) / 3
        centre = np.full((1, 3), 1 / 3)
        return np.concatenate([corners, mids, centre, thirds])
    raise ValueError(f"sweeps are defined for 2 or 3 rewards, got {n_rewards}")
