import numpy as np
import pytest

from ric.mapping import preference_to_rewards, simplex_grid
from ric.normalization import RewardStats

LO, HI = -3.9, 4.1  # docs/METHOD.md's worked example


@pytest.mark.parametrize(
    "w, method, expected",
    [
        ([0.5, 0.5], "ric", [4.1, 4.1]),
        ([0.5, 0.5], "l2", [1.8, 1.8]),
        ([0.3, 0.7], "ric", [0.9, 4.1]),
        ([0.3, 0.7], "l2", [-0.7, 3.5]),
        ([0.3, 0.7], "linear", [-1.5, 1.7]),
        ([1.0, 0.0], "ric", [4.1, -3.9]),
        ([3, 7], "ric", [0.9, 4.1]),  # renormalized to sum 1
    ],
)
def test_two_objectives_by_hand(w, method, expected):
    got = preference_to_rewards(w, LO, HI, method)
    assert np.round(got, 1).tolist() == expected


def test_three_objectives_by_hand():
    # N=3, w=(0.2, 0.5, 0.3): N*w = (0.6, 1.5, 0.9) -> min(.,1) = (0.6, 1, 0.9), span 8.
    got = preference_to_rewards([0.2, 0.5, 0.3], LO, HI, "ric")
    assert np.allclose(got, [0.6 * 8 - 3.9, 4.1, 0.9 * 8 - 3.9])
    norm = np.sqrt(0.2**2 + 0.5**2 + 0.3**2)
    got = preference_to_rewards([0.2, 0.5, 0.3], LO, HI, "l2")
    assert np.allclose(got, np.array([0.2, 0.5, 0.3]) / norm * 8 - 3.9)
    got = preference_to_rewards([0.2, 0.5, 0.3], [0, 0, 0], [1, 2, 4], "linear")
    assert np.allclose(got, [0.2, 1.0, 1.2])


def test_quantile_method():
    rng = np.random.default_rng(0)
    stats = RewardStats.fit(rng.normal(size=(2000, 2)), ["a", "b"])
    got = preference_to_rewards([0.2, 0.8], method="quantile", stats=stats)
    assert np.isclose(got[0], stats.quantile(0.4)[0])  # 2 * 0.2
    assert np.isclose(got[1], stats.quantile(0.9999999)[1])
    # 3 objectives: dominant gets the top quantile, others quantile N*w.
    stats3 = RewardStats.fit(rng.normal(size=(2000, 3)), ["a", "b", "c"])
    got = preference_to_rewards([0.1, 0.6, 0.3], method="quantile", stats=stats3)
    assert np.allclose(
        got, [stats3.quantile(0.3)[0], stats3.quantile(0.9999999)[1], stats3.quantile(0.9)[2]]
    )


def test_range_from_stats():
    rng = np.random.default_rng(1)
    stats = RewardStats.fit(rng.normal(size=(100, 2)), ["a", "b"])
    got = preference_to_rewards([0.25, 0.75], stats=stats)
    assert np.allclose(got, [0.5 * (stats.high[0] - stats.low[0]) + stats.low[0], stats.high[1]])


def test_ric_is_argmax_of_concave_surrogate():
    # min(N w, 1) maximizes sum_i w_i x_i - x_i^2 / (2N) over [0, 1]^N (docs/METHOD.md section 6).
    rng = np.random.default_rng(2)
    grid = np.linspace(0, 1, 1001)
    for _ in range(5):
        w = rng.dirichlet(np.ones(3))
        frac = preference_to_rewards(w, 0.0, 1.0, "ric")
        brute = [grid[np.argmax(wi * grid - grid**2 / 6)] for wi in w]
        assert np.allclose(frac, brute, atol=1e-3)


@pytest.mark.parametrize(
    "w, match",
    [
        ([0, 0], "all zero"),
        ([-0.1, 1.1], "non-negative"),
        ([np.nan, 1], "finite"),
        ([np.inf, 1], "finite"),
        ([1], "at least 2"),
        ([[0.5, 0.5]], "flat"),
        (["a", "b"], "numbers"),
    ],
)
def test_bad_weights(w, match):
    with pytest.raises(ValueError, match=match):
        preference_to_rewards(w, LO, HI)


def test_bad_method_and_range():
    with pytest.raises(ValueError, match="unknown mapping"):
        preference_to_rewards([0.5, 0.5], LO, HI, "linf2")
    with pytest.raises(ValueError, match="below"):
        preference_to_rewards([0.5, 0.5], 1.0, 0.0)
    with pytest.raises(ValueError, match="low and high"):
        preference_to_rewards([0.5, 0.5], [0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="needs the training"):
        preference_to_rewards([0.5, 0.5], LO, HI, "quantile")
    with pytest.raises(ValueError, match="pass low and high"):
        preference_to_rewards([0.5, 0.5])
    stats = RewardStats.fit(np.random.default_rng(0).normal(size=(10, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="expected 2 weights"):
        preference_to_rewards([0.2, 0.3, 0.5], stats=stats)


def test_simplex_grid():
    g2 = simplex_grid(2)
    assert g2.shape == (11, 2) and np.allclose(g2.sum(1), 1) and g2[0, 0] == 0
    assert simplex_grid(2, points=5)[:, 0].tolist() == [0, 0.25, 0.5, 0.75, 1]
    g3 = simplex_grid(3)
    assert g3.shape == (13, 3) and np.allclose(g3.sum(1), 1)
    assert len({tuple(np.round(r, 6)) for r in g3}) == 13
    with pytest.raises(ValueError):
        simplex_grid(4)
