"""The drift statistics on synthetic Gaussians: correctness of MMD², calibration and power."""

from __future__ import annotations

import numpy as np
import pytest

from consumers.drift.detectors import (
    DetectorResult,
    mean_drop,
    mmd2_unbiased,
    mmd_permutation_test,
    rate_rise,
)
from consumers.drift.settings import DriftOptions

DIM = 16


def gaussians(seed: int, n: int = 100, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, DIM)), rng.normal(size=(n, DIM)) + shift


def naive_mmd2(x: np.ndarray, y: np.ndarray, sigma2: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-np.sum((a - b) ** 2) / (2 * sigma2)))

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(a, b) for a in x for b in y) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd2_matches_the_textbook_formula() -> None:
    x, y = gaussians(1, n=12, shift=0.3)
    assert mmd2_unbiased(x, y, bandwidth=7.0) == pytest.approx(naive_mmd2(x, y, 7.0), rel=1e-10)


def test_permutation_test_reports_the_unbiased_statistic_with_the_median_bandwidth() -> None:
    x, y = gaussians(2, n=40, shift=0.2)
    pooled = np.vstack([x, y])
    d2 = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    sigma2 = float(np.median(d2[np.triu_indices(len(pooled), k=1)]))
    result = mmd_permutation_test(x, y, n_permutations=99, alpha=0.05)
    assert result.details["bandwidth_sigma2"] == pytest.approx(sigma2)
    assert result.score == pytest.approx(naive_mmd2(x, y, sigma2), rel=1e-9)


def configured_test(x: np.ndarray, y: np.ndarray, seed: int) -> DetectorResult:
    """The test as the app runs it, with the default settings."""
    opts = DriftOptions()
    return mmd_permutation_test(
        x, y, n_permutations=opts.mmd_permutations, alpha=opts.mmd_alpha,
        min_statistic=opts.mmd_min_statistic, seed=seed,
    )  # fmt: skip


def test_same_distribution_rarely_drifts_at_the_configured_threshold() -> None:
    alarms = [configured_test(*gaussians(seed), seed=seed).drift for seed in range(30)]
    assert sum(alarms) <= 1, f"false positives on {sum(alarms)} of 30 seeds"


def test_p_values_are_calibrated_under_the_null() -> None:
    # at alpha = 0.05 about 5 % of same-distribution pairs must be flagged, not 0 % and not 30 %
    rejections = sum(
        mmd_permutation_test(*gaussians(seed, n=30), n_permutations=199, alpha=0.05, seed=seed).drift
        for seed in range(100)
    )
    assert 1 <= rejections <= 12


def test_shifted_distribution_drifts_at_the_configured_threshold() -> None:
    opts = DriftOptions()
    for seed in range(5):
        result = configured_test(*gaussians(seed, shift=0.5), seed=seed)
        assert result.drift, result
        assert result.details["p_value"] <= opts.mmd_alpha
        assert result.score > result.threshold >= opts.mmd_min_statistic


def test_drift_decision_agrees_with_the_p_value() -> None:
    for seed in range(20):
        result = mmd_permutation_test(*gaussians(seed, n=30, shift=0.25), n_permutations=199, alpha=0.05)
        assert result.drift == (result.details["p_value"] <= 0.05)


def test_permutation_test_is_seeded_and_p_value_never_zero() -> None:
    x, y = gaussians(3, n=30, shift=3.0)
    first = mmd_permutation_test(x, y, n_permutations=99, alpha=0.05, seed=7)
    again = mmd_permutation_test(x, y, n_permutations=99, alpha=0.05, seed=7)
    assert first == again
    assert first.details["p_value"] == pytest.approx(1 / 100)


def test_effect_size_floor_suppresses_small_significant_differences() -> None:
    x, y = gaussians(4, n=200, shift=0.15)
    plain = mmd_permutation_test(x, y, n_permutations=999, alpha=0.01)
    floored = mmd_permutation_test(x, y, n_permutations=999, alpha=0.01, min_statistic=1.0)
    assert plain.drift and not floored.drift
    assert floored.threshold == 1.0


def test_unreachable_alpha_is_rejected() -> None:
    x, y = gaussians(5, n=10)
    with pytest.raises(ValueError, match="permutations"):
        mmd_permutation_test(x, y, n_permutations=99, alpha=0.001)


def test_mean_drop_fires_only_on_a_large_enough_fall() -> None:
    reference = np.full(50, 0.8)
    assert mean_drop(reference, np.full(50, 0.7), threshold=0.05).drift
    assert not mean_drop(reference, np.full(50, 0.78), threshold=0.05).drift
    rise = mean_drop(reference, np.full(50, 0.9), threshold=0.05)
    assert not rise.drift and rise.score == pytest.approx(-0.1)


def test_rate_rise_fires_only_when_the_share_rises() -> None:
    reference = np.array([1.0] * 5 + [0.0] * 95)
    current = np.array([1.0] * 20 + [0.0] * 80)
    result = rate_rise(reference, current, threshold=0.1)
    assert result.drift and result.score == pytest.approx(0.15)
    assert not rate_rise(current, reference, threshold=0.1).drift
