import numpy as np
import pytest

from ric.normalization import RewardStats


@pytest.fixture
def raw():
    rng = np.random.default_rng(0)
    return np.stack([rng.normal(3, 2, 500), rng.exponential(1, 500)], axis=1)


def test_fit_matches_population_std(raw):
    s = RewardStats.fit(raw, ["a", "b"])
    assert np.allclose(s.mean, raw.mean(0))
    assert np.allclose(s.std, raw.std(0))  # ddof=0, as np.std in the released code
    z = s.normalize(raw)
    assert np.allclose(z.mean(0), 0, atol=1e-12) and np.allclose(z.std(0), 1)
    assert np.allclose(s.denormalize(z), raw)
    assert np.allclose(s.low, z.min(0)) and np.allclose(s.high, z.max(0))


def test_quantiles_interpolate(raw):
    s = RewardStats.fit(raw, ["a", "b"])
    z = s.normalize(raw)
    for q in (0.0, 0.25, 0.7, 1.0):
        assert np.allclose(s.quantile(q), np.quantile(z, q, axis=0), atol=1e-9)
    assert s.quantile([0.0, 1.0]).tolist() == [s.quantiles[0][0], s.quantiles[1][-1]]


def test_gaussian_range_is_about_four_sigma(raw):
    s = RewardStats.fit(raw, ["a", "b"], range_source="gaussian")
    assert -5 < s.low[0] < -3.5 and 3.5 < s.high[0] < 5
    assert s.low[0] == s.low[1]


def test_json_round_trip(tmp_path, raw):
    s = RewardStats.fit(raw, ["a", "b"], range_source="data", range_quantiles=(0.01, 0.99))
    path = s.save(tmp_path)
    assert path.name == "reward_stats.json"
    t = RewardStats.load(tmp_path)
    assert t == s
    assert np.allclose(t.normalize(raw[:3]), s.normalize(raw[:3]))


def test_single_vector_normalize(raw):
    s = RewardStats.fit(raw, ["a", "b"])
    assert s.normalize(raw[0]).shape == (2,)


@pytest.mark.parametrize(
    "data, names, match",
    [
        ([[1, 2], [1, 3]], ["a", "b"], "constant"),
        ([[1, 2]], ["a", "b"], "at least 2"),
        ([[1, 2, 3], [2, 3, 4]], ["a", "b"], "columns"),
        ([[1, np.nan], [2, 3]], ["a", "b"], "NaN"),
        ([["x", 1], [2, 3]], ["a", "b"], "numbers"),
        ([[1, 2], [2, 3]], ["a", "a"], "unique"),
    ],
)
def test_bad_fit(data, names, match):
    with pytest.raises(ValueError, match=match):
        RewardStats.fit(data, names)


def test_bad_use(raw, tmp_path):
    s = RewardStats.fit(raw, ["a", "b"])
    with pytest.raises(ValueError, match="columns"):
        s.normalize([[1, 2, 3]])
    with pytest.raises(ValueError, match="levels"):
        s.quantile(1.5)
    with pytest.raises(ValueError, match="range_source"):
        RewardStats.fit(raw, ["a", "b"], range_source="magic")
    with pytest.raises(FileNotFoundError):
        RewardStats.load(tmp_path / "missing.json")


def test_with_range_moves_only_the_mapping_range():
    rng = np.random.default_rng(1)
    stats = RewardStats.fit(rng.normal(size=(5000, 2)), ["a", "b"])
    narrow = stats.with_range([0.05, 0.95])
    assert np.allclose(narrow.low, stats.quantile(0.05), atol=1e-9)
    assert np.allclose(narrow.high, stats.quantile(0.95), atol=1e-9)
    assert narrow.mean == stats.mean and narrow.std == stats.std
    assert narrow.range_quantiles == [0.05, 0.95] and stats.range_quantiles == [0.0, 1.0]
    assert -2.0 < narrow.low[0] < -1.3 and 1.3 < narrow.high[0] < 2.0
    with pytest.raises(ValueError, match="range_quantiles"):
        stats.with_range([0.9, 0.1])


def test_range_per_reward():
    """One [lo, hi] pair per reward moves each reward's range alone; fit and with_range agree."""
    raw = np.random.default_rng(2).normal(size=(5000, 2))
    stats = RewardStats.fit(raw, ["a", "b"])
    pairs = [[0.2, 0.95], [0.5, 0.95]]
    moved = stats.with_range(pairs)
    assert np.allclose(moved.low, stats.quantile([0.2, 0.5]), atol=1e-9)
    assert np.allclose(moved.high, stats.quantile(0.95), atol=1e-9)
    assert moved.range_quantiles == pairs
    assert RewardStats.from_dict(moved.to_dict()).range_quantiles == pairs
    fitted = RewardStats.fit(raw, ["a", "b"], range_quantiles=pairs)
    z = (raw - raw.mean(0)) / raw.std(0)
    assert np.allclose(fitted.low, [np.quantile(z[:, 0], 0.2), np.quantile(z[:, 1], 0.5)])
    assert fitted.range_quantiles == pairs
    # Equal pairs collapse back to the shared [lo, hi].
    assert stats.with_range([[0.1, 0.9], [0.1, 0.9]]).range_quantiles == [0.1, 0.9]
    for bad in ([[0.1, 0.9]], [[0.1, 0.9], [0.6, 0.5]], [0.1, 0.5, 0.9], "wide"):
        with pytest.raises(ValueError, match="range_quantiles"):
            stats.with_range(bad)
