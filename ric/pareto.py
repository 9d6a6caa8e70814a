"""Pareto-front and controllability metrics for multi-objective alignment.

Every objective is MAXIMIZED: a point ``p`` dominates ``q`` when ``p >= q`` in every
objective and ``p > q`` in at least one.

Hypervolume depends entirely on the reference point. Report the reference point next to
every hypervolume and reuse the same one for every method being compared (e.g. compute it
once with :func:`default_reference_point` on the union of all methods' points).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "controllability_report",
    "default_reference_point",
    "desired_achieved_mae",
    "expected_utility",
    "hypervolume",
    "monotonicity",
    "pareto_mask",
    "spacing",
    "sparsity",
    "spearman_controllability",
]

_NUMERIC_KINDS = "biuf"


def _as_numeric(x: npt.ArrayLike, name: str) -> np.ndarray:
    """Convert ``x`` to a float array, raising ValueError for non-numeric or ragged input."""
    if isinstance(x, (str, bytes)):
        raise ValueError(f"{name} must be numeric, got a {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        # numpy's own message ("inhomogeneous shape after 1 dimensions") is cryptic.
        raise ValueError(
            f"{name} must be a rectangular array of numbers (ragged or non-numeric input)"
        ) from exc
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(
            f"{name} must be a rectangular array of numbers, got dtype {arr.dtype} "
            "(ragged, string or object input)"
        )
    return arr.astype(float)


def _as_points(
    points: npt.ArrayLike,
    name: str = "points",
    *,
    allow_1d: bool = False,
    allow_empty: bool = False,
    dim: int | None = None,
) -> np.ndarray:
    """Validate ``points`` as a finite float array of shape (n, d) with d >= 1.

    ``allow_1d`` turns a 1-D input into a single point (1, d); ``allow_empty`` accepts n == 0;
    ``dim`` requires exactly ``dim`` columns (and gives an empty 1-D input its width).
    """
    arr = _as_numeric(points, name)
    if arr.ndim == 1 and arr.size == 0 and allow_empty and dim is not None:
        arr = arr.reshape(0, dim)
    elif arr.ndim == 1 and allow_1d:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n, d), got ndim={arr.ndim}")
    n, d = arr.shape
    if d < 1:
        raise ValueError(f"{name} must have at least one objective (column), got shape {arr.shape}")
    if dim is not None and d != dim:
        raise ValueError(f"{name} must have {dim} objectives (columns), got {d}")
    if n == 0 and not allow_empty:
        raise ValueError(f"{name} must contain at least one point, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _as_vector(x: npt.ArrayLike, name: str) -> np.ndarray:
    """Validate ``x`` as a non-empty finite 1-D float array."""
    arr = _as_numeric(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got ndim={arr.ndim}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def pareto_mask(points: npt.ArrayLike) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points`` (n, d); empty input gives ``[]``.

    Exact duplicates are all kept, since neither strictly dominates the other.
    """
    pts = _as_points(points, allow_empty=True)
    n = len(pts)
    mask = np.ones(n, dtype=bool)
    # In descending lexicographic order a point can only be dominated by points before it
    # (exact, unlike sorting by a float sum), and dominated points are never needed as
    # dominators (dominance is transitive), so each point is only compared with the front.
    order = np.lexsort(-pts[:, ::-1].T)
    front: list[int] = []
    for i in order:
        p = pts[i]
        if front:
            f = pts[front]
            if np.any(np.all(f >= p, axis=1) & np.any(f > p, axis=1)):
                mask[i] = False
                continue
        front.append(i)
    return mask


def hypervolume(points: npt.ArrayLike, ref: npt.ArrayLike) -> float:
    """Exact hypervolume dominated by ``points`` (n, d) and bounded below by ``ref`` (d,).

    Only points strictly better than ``ref`` in every objective contribute; an empty
    ``points`` gives 0. Computed by moocore (the C library behind pymoo's and DEAP's
    indicators); tests check it against a hand-written slicing algorithm.
    """
    import moocore

    r = _as_vector(ref, "ref")
    pts = _as_points(points, allow_empty=True, dim=r.size)
    pts = pts[np.all(pts > r, axis=1)]
    if len(pts) == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=r, maximise=True))


def default_reference_point(points: npt.ArrayLike, margin: float = 0.1) -> np.ndarray:
    """Reference point ``min - margin * range`` per objective over ``points`` (n, d).

    Where an objective has zero range the offset is ``margin * max(|min|, 1)`` so that the
    points still contribute. Compute it once (e.g. on the union of all methods' points),
    state it with any hypervolume, and reuse it for every method compared.
    """
    pts = _as_points(points)
    margin = float(margin)
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be finite and >= 0, got {margin}")
    lo = pts.min(axis=0)
    span = pts.max(axis=0) - lo
    span = np.where(span > 0, span, np.maximum(np.abs(lo), 1.0))
    return lo - margin * span


def sparsity(points: npt.ArrayLike) -> float:
    """PGMORL sparsity (Xu et al. 2020) of the non-dominated subset of ``points`` (n, d).

    With P the non-dominated set (duplicates kept, as in the PGMORL reference code) and
    ``s_j`` its values on objective j sorted ascending::

        S(P) = 1 / (|P| - 1) * sum_j sum_i (s_j[i+1] - s_j[i]) ** 2

    Lower means a denser front. Returns 0 when |P| < 2.
    """
    pts = _as_points(points, allow_empty=True)
    front = pts[pareto_mask(pts)]
    n = len(front)
    if n < 2:
        return 0.0
    gaps = np.diff(np.sort(front, axis=0), axis=0)
    return float(np.sum(gaps**2) / (n - 1))


def spacing(points: npt.ArrayLike) -> float:
    """Schott's spacing of ``points`` (n, d): sample std (ddof=1) of nearest-neighbour L1 distances.

    ``d_i = min_{j != i} sum_k |p_ik - p_jk|`` and ``S = sqrt(sum_i (mean(d) - d_i)^2 / (n-1))``.
    Computed on all given points; filter with :func:`pareto_mask` first for the front only.
    Returns 0 for fewer than 2 points; 0 means evenly spaced.
    """
    pts = _as_points(points, allow_empty=True)
    n = len(pts)
    if n < 2:
        return 0.0
    # Accumulate per objective to hold only an (n, n) matrix instead of (n, n, d).
    dist = np.zeros((n, n))
    for col in pts.T:
        dist += np.abs(col[:, None] - col[None, :])
    np.fill_diagonal(dist, np.inf)
    return float(np.std(dist.min(axis=1), ddof=1))


def expected_utility(points: npt.ArrayLike, weights: npt.ArrayLike) -> float:
    """Mean over weight vectors w (rows of ``weights``) of ``max_p w . p`` over ``points``.

    ``weights`` has shape (m, d), or (d,) for a single weight vector; entries must be
    non-negative and each row is normalized to sum to 1 (an all-zero row is an error).
    """
    pts = _as_points(points)
    w = _as_points(weights, "weights", allow_1d=True, dim=pts.shape[1])
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")
    total = w.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError("every row of weights must have a positive sum")
    w = w / total
    return float(np.mean(np.max(w @ pts.T, axis=1)))


def _paired(
    a: npt.ArrayLike, b: npt.ArrayLike, name_a: str, name_b: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two (n, d) arrays of identical shape (one row per sweep point)."""
    x = _as_points(a, name_a)
    y = _as_points(b, name_b)
    if x.shape != y.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {x.shape} and {y.shape}"
        )
    return x, y


def spearman_controllability(weights: npt.ArrayLike, achieved: npt.ArrayLike) -> np.ndarray:
    """Per-objective Spearman rank correlation between ``weights[:, i]`` and ``achieved[:, i]``.

    Both arrays are (n, d) with one row per sweep point. An objective whose weight or
    achieved column is constant (including n == 1) has no defined correlation: NaN.
    """
    w, a = _paired(weights, achieved, "weights", "achieved")
    out = np.full(w.shape[1], np.nan)
    for i in range(w.shape[1]):
        if np.ptp(w[:, i]) == 0 or np.ptp(a[:, i]) == 0:
            continue
        out[i] = stats.spearmanr(w[:, i], a[:, i]).statistic
    return out


def monotonicity(weights: npt.ArrayLike, achieved: npt.ArrayLike) -> np.ndarray:
    """Per objective, fraction of weight-increasing steps where ``achieved[:, i]`` does not drop.

    Rows are sorted by ``weights[:, i]``; each pair of consecutive rows whose weight strictly
    increases counts once, and scores 1 if ``achieved[:, i]`` did not decrease. Rows with
    tied weights are handled order-independently: every pair (a, b) with a in one weight
    level and b in the next higher level is counted (same as the plain definition when
    there are no ties). NaN for an objective with a single weight level.
    """
    w, a = _paired(weights, achieved, "weights", "achieved")
    out = np.full(w.shape[1], np.nan)
    for i in range(w.shape[1]):
        levels = np.unique(w[:, i])
        groups = [a[w[:, i] == v, i] for v in levels]
        good = 0
        pairs = 0
        for lo, hi in zip(groups[:-1], groups[1:], strict=True):
            good += int(np.sum(hi[None, :] >= lo[:, None]))
            pairs += lo.size * hi.size
        if pairs:
            out[i] = good / pairs
    return out


def desired_achieved_mae(desired: npt.ArrayLike, achieved: npt.ArrayLike) -> np.ndarray:
    """Per-objective mean absolute error between ``desired`` and ``achieved`` (both (n, d))."""
    x, y = _paired(desired, achieved, "desired", "achieved")
    return np.mean(np.abs(x - y), axis=0)


def _jsonable(values: np.ndarray) -> list[float | None]:
    # NaN is not valid strict JSON, so undefined entries become None.
    return [None if np.isnan(v) else float(v) for v in values]


def _nan_mean(values: np.ndarray) -> float | None:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else None


def controllability_report(
    weights: npt.ArrayLike, desired: npt.ArrayLike, achieved: npt.ArrayLike
) -> dict[str, list[float | None] | float | None]:
    """JSON-friendly bundle of the controllability metrics for one preference sweep.

    Keys: ``spearman``, ``monotonicity``, ``mae`` (per-objective lists) and ``*_mean``
    (mean over objectives, ignoring undefined ones). Undefined values (NaN) become None.
    """
    w, a = _paired(weights, achieved, "weights", "achieved")
    rho = spearman_controllability(w, a)
    mono = monotonicity(w, a)
    mae = desired_achieved_mae(desired, a)
    report: dict[str, list[float | None] | float | None] = {}
    for key, vals in (("spearman", rho), ("monotonicity", mono), ("mae", mae)):
        report[key] = _jsonable(vals)
        report[f"{key}_mean"] = _nan_mean(vals)
    return report
