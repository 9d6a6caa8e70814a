import itertools
import json
import time

import numpy as np
import pytest

from ric.pareto import (
    _as_points,
    controllability_report,
    default_reference_point,
    desired_achieved_mae,
    expected_utility,
    hypervolume,
    monotonicity,
    pareto_mask,
    spacing,
    sparsity,
    spearman_controllability,
)


def brute_force_hv(points, ref):
    """Inclusion-exclusion over all non-empty subsets (exponential: keep n <= 10)."""
    pts = np.asarray(points, dtype=float)
    ref = np.asarray(ref, dtype=float)
    total = 0.0
    for k in range(1, len(pts) + 1):
        for subset in itertools.combinations(range(len(pts)), k):
            side = np.clip(pts[list(subset)].min(axis=0) - ref, 0.0, None)
            total += (-1) ** (k + 1) * np.prod(side)
    return total


def brute_force_mask(points):
    pts = np.asarray(points, dtype=float)
    return np.array(
        [not any(np.all(q >= p) and np.any(q > p) for q in pts) for p in pts], dtype=bool
    )


# --- pareto_mask ---------------------------------------------------------------------------


def test_pareto_mask_2d_hand():
    pts = [[1, 2], [2, 1], [0.5, 0.5], [1, 1], [2, 2.5]]
    assert pareto_mask(pts).tolist() == [False, False, False, False, True]
    pts = [[1, 3], [2, 2], [3, 1], [1, 1], [2, 1]]
    assert pareto_mask(pts).tolist() == [True, True, True, False, False]


def test_pareto_mask_duplicates_kept():
    pts = [[1, 2], [1, 2], [2, 1], [0, 0]]
    assert pareto_mask(pts).tolist() == [True, True, True, False]


def test_pareto_mask_weak_domination_counts():
    # Equal in one objective, better in the other: dominated.
    assert pareto_mask([[1, 1], [1, 2]]).tolist() == [False, True]


def test_pareto_mask_single_and_empty():
    assert pareto_mask([[3.0, -1.0]]).tolist() == [True]
    assert pareto_mask(np.empty((0, 2))).tolist() == []


def test_pareto_mask_3d_hand():
    pts = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0.4, 0.4, 0], [1, 1, 1]]
    assert pareto_mask(pts).tolist() == [False] * 5 + [True]
    pts = pts[:-1]
    assert pareto_mask(pts).tolist() == [True, True, True, True, False]


def test_pareto_mask_1d():
    assert pareto_mask([[1.0], [3.0], [3.0], [2.0]]).tolist() == [False, True, True, False]


def test_pareto_mask_no_float_sum_rounding():
    # Sums are equal in float64, yet the second point is dominated.
    assert pareto_mask([[1e20, 0.0], [1e20, 1.0]]).tolist() == [False, True]


@pytest.mark.parametrize("seed", range(5))
def test_pareto_mask_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    # Small integer grid so ties and duplicates occur.
    pts = rng.integers(0, 4, size=(30, 3))
    assert pareto_mask(pts).tolist() == brute_force_mask(pts).tolist()


# --- hypervolume ---------------------------------------------------------------------------


# The exact algorithm ric used before moocore, kept as a second oracle (points w.r.t. the
# origin, all strictly positive).


def _hv2d(q: np.ndarray) -> float:
    """Hypervolume of strictly positive 2-D points w.r.t. the origin (sort-and-sweep)."""
    order = np.lexsort((-q[:, 1], -q[:, 0]))
    x = q[order, 0]
    # Running max of y along decreasing x: each point adds a strip of width x above the
    # best y seen so far; dominated points add zero-height strips.
    y = np.maximum.accumulate(q[order, 1])
    return float(np.sum(x * np.diff(y, prepend=0.0)))


def _hv(q: np.ndarray) -> float:
    """Exact hypervolume of strictly positive points w.r.t. the origin (HSO slicing)."""
    d = q.shape[1]
    if d == 1:
        return float(q.max())
    if d == 2:
        return _hv2d(q)
    # Slice along the last objective from the top: slab k lies between the k-th and
    # (k+1)-th largest last coordinates and its cross-section is the (d-1)-D hypervolume
    # of the k points above it.
    order = np.argsort(-q[:, -1], kind="stable")
    z = q[order, -1]
    proj = q[order, :-1]
    front = np.empty((0, d - 1))
    area = 0.0
    total = 0.0
    for k in range(len(z)):
        p = proj[k]
        # A point weakly dominated by the current cross-section leaves it unchanged, so the
        # recursion is skipped; otherwise points it weakly dominates are dropped to keep
        # the recursion small.
        if not np.any(np.all(front >= p, axis=1)):
            front = np.vstack([front[~np.all(front <= p, axis=1)], p])
            area = _hv(front)
        z_next = z[k + 1] if k + 1 < len(z) else 0.0
        total += area * (z[k] - z_next)
    return total


def test_moocore_matches_slicing_oracle():
    rng = np.random.default_rng(3)
    for d in (2, 3, 4):
        for n in (1, 5, 30):
            pts = rng.uniform(0.1, 2.0, size=(n, d))
            assert hypervolume(pts, np.zeros(d)) == pytest.approx(_hv(pts[pareto_mask(pts)]))


def test_hypervolume_hand_values():
    assert hypervolume([[1, 2], [2, 1]], [0, 0]) == pytest.approx(3.0)
    assert hypervolume([[2, 3]], [0, 0]) == pytest.approx(6.0)
    assert hypervolume([[1, 1, 1]], [0, 0, 0]) == pytest.approx(1.0)
    # Union of two unit-overlapping boxes: 2*1*1 + 1*2*1 - 1*1*1.
    assert hypervolume([[2, 1, 1], [1, 2, 1]], [0, 0, 0]) == pytest.approx(3.0)
    assert hypervolume([[3.0], [1.0]], [0.5]) == pytest.approx(2.5)
    assert hypervolume([[1, 2], [2, 1]], [-1, -1]) == pytest.approx(8.0)


@pytest.mark.parametrize("d", [2, 3, 4])
@pytest.mark.parametrize("seed", range(4))
def test_hypervolume_matches_inclusion_exclusion(d, seed):
    rng = np.random.default_rng(100 * d + seed)
    n = 8 if d < 4 else 7
    pts = rng.uniform(-1, 1, size=(n, d))
    ref = rng.uniform(-1.2, -0.2, size=d)
    assert hypervolume(pts, ref) == pytest.approx(brute_force_hv(pts, ref), rel=1e-12)


@pytest.mark.parametrize("d", [3, 4])
def test_hypervolume_with_ties_matches_brute_force(d):
    rng = np.random.default_rng(7)
    pts = rng.integers(1, 4, size=(9, d)).astype(float)
    assert hypervolume(pts, np.zeros(d)) == pytest.approx(brute_force_hv(pts, np.zeros(d)))


def test_hypervolume_dominated_points_do_not_change_it():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, size=(10, 3))
    ref = np.zeros(3)
    base = hypervolume(pts, ref)
    dominated = pts[:5] * 0.9  # strictly worse than an existing point
    assert hypervolume(np.vstack([pts, dominated]), ref) == pytest.approx(base, rel=1e-12)
    assert hypervolume(np.vstack([pts, pts]), ref) == pytest.approx(base, rel=1e-12)


def test_hypervolume_points_not_above_ref_contribute_nothing():
    ref = [0.0, 0.0]
    assert hypervolume([[1, 2], [2, 1], [5, -1], [-3, 4], [0, 10]], ref) == pytest.approx(3.0)
    assert hypervolume([[-1, -1]], ref) == 0.0
    assert hypervolume([[0, 0, 0]], [0, 0, 0]) == 0.0
    assert hypervolume(np.empty((0, 3)), [0, 0, 0]) == 0.0
    assert hypervolume([], [0, 0]) == 0.0


def test_hypervolume_fast_enough_4d():
    rng = np.random.default_rng(1)
    # Points on the positive unit sphere are all mutually non-dominated: worst case.
    pts = np.abs(rng.normal(size=(50, 4)))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    start = time.perf_counter()
    hv = hypervolume(pts, np.zeros(4))
    assert time.perf_counter() - start < 5.0
    assert 0 < hv < 1


def test_hypervolume_ref_mismatch():
    with pytest.raises(ValueError, match="must have 2 objectives"):
        hypervolume([[1, 2, 3]], [0, 0])
    with pytest.raises(ValueError, match="ref must be a 1-D array"):
        hypervolume([[1, 2]], [[0, 0]])
    with pytest.raises(ValueError, match="ref contains NaN"):
        hypervolume([[1, 2]], [0, np.nan])


def test_default_reference_point():
    ref = default_reference_point([[0, 10], [10, 20]], margin=0.1)
    np.testing.assert_allclose(ref, [-1.0, 9.0])
    # Zero-range objective still gets an offset, so the point has positive HV.
    ref = default_reference_point([[2.0, 5.0]])
    assert np.all(ref < [2.0, 5.0])
    assert hypervolume([[2.0, 5.0]], ref) > 0
    with pytest.raises(ValueError, match="margin"):
        default_reference_point([[1, 2]], margin=-1)


# --- sparsity / spacing / expected utility -------------------------------------------------


def test_sparsity_hand_values():
    # Sorted gaps: objective 0 -> 1, 1; objective 1 -> 1, 1; sum 4 over n-1 = 2.
    assert sparsity([[0, 2], [1, 1], [2, 0]]) == pytest.approx(2.0)
    # Uneven: gaps 1, 3 per objective -> (1 + 9) * 2 / 2.
    assert sparsity([[0, 4], [1, 3], [4, 0]]) == pytest.approx(10.0)
    # The dominated point (0, 0) is ignored.
    assert sparsity([[0, 2], [1, 1], [2, 0], [0, 0]]) == pytest.approx(2.0)
    assert sparsity([[1, 1]]) == 0.0
    assert sparsity([[1, 1], [0, 0]]) == 0.0  # front has one point


def test_spacing_hand_values():
    # Evenly spaced along a line: all nearest L1 distances equal.
    assert spacing([[0, 3], [1, 2], [2, 1], [3, 0]]) == pytest.approx(0.0)
    # Nearest L1 distances: 2, 2, 6 -> sample std of [2, 2, 6].
    assert spacing([[0, 4], [1, 3], [4, 0]]) == pytest.approx(np.std([2, 2, 6], ddof=1))
    assert spacing([[1, 1]]) == 0.0


def test_expected_utility_hand_value():
    pts = [[1, 0], [0, 1], [0.6, 0.6]]
    # w=(1,0): 1; w=(0.5,0.5): 0.6; w=(0,1): 1 -> mean 13/15.
    w = [[1, 0], [0.5, 0.5], [0, 1]]
    assert expected_utility(pts, w) == pytest.approx((1 + 0.6 + 1) / 3)
    # Rows are normalized; a 1-D weight vector is a single weight.
    assert expected_utility(pts, [2, 2]) == pytest.approx(0.6)


def test_expected_utility_bad_weights():
    with pytest.raises(ValueError, match="non-negative"):
        expected_utility([[1, 2]], [[-0.5, 1.5]])
    with pytest.raises(ValueError, match="positive sum"):
        expected_utility([[1, 2]], [[0, 0]])
    with pytest.raises(ValueError, match="weights must have 2 objectives"):
        expected_utility([[1, 2]], [[0.2, 0.3, 0.5]])
    with pytest.raises(ValueError, match="weights contains NaN"):
        expected_utility([[1, 2]], [[np.nan, 1]])


# --- controllability -----------------------------------------------------------------------


def _sweep():
    w0 = np.linspace(0, 1, 6)
    return np.stack([w0, 1 - w0], axis=1)


def test_spearman_monotone_and_reversed():
    w = _sweep()
    rho = spearman_controllability(w, w**2 + 3)
    np.testing.assert_allclose(rho, [1.0, 1.0])
    rho = spearman_controllability(w, -w)
    np.testing.assert_allclose(rho, [-1.0, -1.0])


def test_spearman_constant_column_is_nan():
    w = _sweep()
    achieved = np.stack([w[:, 0], np.full(6, 2.0)], axis=1)
    rho = spearman_controllability(w, achieved)
    assert rho[0] == pytest.approx(1.0)
    assert np.isnan(rho[1])


def test_monotonicity_hand_value():
    w = [[0.0], [0.25], [0.5], [0.75], [1.0]]
    a = [[1.0], [2.0], [1.5], [1.5], [3.0]]
    # Steps: up, down, flat (counts), up -> 3 / 4.
    np.testing.assert_allclose(monotonicity(w, a), [0.75])
    # Row order does not matter.
    np.testing.assert_allclose(monotonicity(w[::-1], a[::-1]), [0.75])


def test_monotonicity_ties_and_single_level():
    # Levels 0 -> {1, 3}, 1 -> {2}: pairs (1, 2) ok, (3, 2) not -> 0.5, whatever the order.
    np.testing.assert_allclose(monotonicity([[0], [0], [1]], [[1], [3], [2]]), [0.5])
    np.testing.assert_allclose(monotonicity([[0], [0], [1]], [[3], [1], [2]]), [0.5])
    assert np.isnan(monotonicity([[0.5], [0.5]], [[1], [2]])[0])


def test_mae_hand_value():
    mae = desired_achieved_mae([[1, 2], [3, 4]], [[2, 2], [1, 5]])
    np.testing.assert_allclose(mae, [1.5, 0.5])


def test_controllability_report_is_json_friendly():
    w = _sweep()
    achieved = np.stack([w[:, 0], np.full(6, 2.0)], axis=1)
    report = controllability_report(w, w, achieved)
    json.dumps(report, allow_nan=False)
    assert report["spearman"] == [pytest.approx(1.0), None]
    assert report["spearman_mean"] == pytest.approx(1.0)
    assert report["monotonicity"] == [1.0, 1.0]
    assert report["monotonicity_mean"] == 1.0
    assert report["mae"][0] == 0.0
    assert report["mae_mean"] == pytest.approx(np.mean(np.abs(1 - w[:, 1] - 2.0)) / 2)
    assert all(isinstance(v, float) for v in report["mae"])


def test_controllability_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        spearman_controllability([[0, 1], [1, 0]], [[0, 1]])
    with pytest.raises(ValueError, match="same shape"):
        controllability_report([[0, 1], [1, 0]], [[0, 1]], [[0, 1], [1, 0]])


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([[1, 2], [3]], "rectangular array of numbers"),
        ([[1, 2], [3, np.nan]], "NaN or infinite"),
        ([[1, np.inf]], "NaN or infinite"),
        ([1, 2, 3], "2-D array"),
        ([[[1, 2]]], "2-D array"),
        (5.0, "2-D array"),
        ("abc", "must be numeric"),
        ([["a", "b"]], "array of numbers"),
        ([[None, 1]], "array of numbers"),
        (np.empty((0, 2)), "at least one point"),
        (np.empty((2, 0)), "at least one objective"),
        ([[1 + 2j, 1]], "array of numbers"),
    ],
)
def test_as_points_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        _as_points(bad)


def test_as_points_accepts_and_converts():
    arr = _as_points([[1, 2], [3, 4]])
    assert arr.dtype == np.float64 and arr.shape == (2, 2)
    assert _as_points([1, 2], allow_1d=True).shape == (1, 2)
    assert _as_points([], allow_empty=True, dim=3).shape == (0, 3)


@pytest.mark.parametrize("fn", [pareto_mask, sparsity, spacing, lambda p: hypervolume(p, [0, 0])])
def test_public_functions_reject_bad_points(fn):
    with pytest.raises(ValueError, match="points contains NaN"):
        fn([[1, 2], [np.nan, 1]])
    with pytest.raises(ValueError, match="points must be a rectangular"):
        fn([[1, 2], [1]])
