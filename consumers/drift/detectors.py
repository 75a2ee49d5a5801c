"""Two-sample drift statistics; pure numpy, no I/O.

Embeddings: the kernel two-sample test of Gretton et al. (2012), *A Kernel Two-Sample Test*:

* statistic: the unbiased estimator of the squared maximum mean discrepancy, MMD²_u, with the RBF
  kernel ``k(a, b) = exp(-||a - b||² / (2 σ²))``;
* bandwidth: the median heuristic, ``σ² = median of the pairwise squared distances`` of the pooled
  sample (off-diagonal pairs), so no tuning is needed per embedding model;
* p-value: a permutation test with ``n_permutations`` seeded random relabellings of the pooled
  sample, ``p = (1 + #{null >= observed}) / (1 + n_permutations)`` (never 0, valid at any size).

Drift is declared when ``statistic > threshold`` with ``threshold = max(critical, min_statistic)``.
``critical`` is the permutation null's ``k``-th largest value, ``k = floor(alpha (B + 1))``, which makes
``statistic > critical`` the same decision as ``p <= alpha``. ``min_statistic`` is an effect-size floor:
the permutation test assumes exchangeable items, but chunks of one document arrive together and are
alike, so with large windows a tiny but "significant" MMD² must not trigger a retraining.

Scalar signals, for the query stream: :func:`mean_drop` (mean top-1 retrieval score fell by more
than a threshold) and :func:`rate_rise` (share of "don't know" answers rose by more than a threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]

_PERMUTATION_BATCH = 256
"""Permutations evaluated per matrix product; bounds memory at (n + m) x 256 floats."""


@dataclass(frozen=True)
class DetectorResult:
    """The outcome of one drift check.

    ``score`` and ``threshold`` are in the detector's own unit (MMD² for embeddings, a difference
    of means or shares for the scalar signals); ``drift`` is ``score > threshold``. ``details``
    holds extra, JSON-ready numbers (p-value, bandwidth, means).
    """

    score: float
    threshold: float
    drift: bool
    details: dict[str, float | int] = field(default_factory=dict)


def _as_matrix(sample: FloatArray, name: str) -> FloatArray:
    arr = np.asarray(sample, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"{name} must be a 2-d array with at least 2 rows, got shape {arr.shape}")
    return arr


def squared_distances(z: FloatArray) -> FloatArray:
    """Pairwise squared Euclidean distances of the rows of ``z`` (clipped at 0 against rounding)."""
    sq = np.einsum("ij,ij->i", z, z)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


def median_bandwidth(d2: FloatArray) -> float:
    """Median heuristic: the median off-diagonal squared distance (σ²); 1.0 if all points coincide."""
    n = d2.shape[0]
    med = float(np.median(d2[np.triu_indices(n, k=1)]))
    return med if med > 0.0 else 1.0


def _mmd2_from_sums(
    sxx: FloatArray, syy: FloatArray, sxy: FloatArray, n: int, m: int
) -> FloatArray:  # fmt: skip
    """MMD²_u from kernel sums that exclude the diagonal (``sxx``, ``syy``) and the cross sum."""
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)


def mmd2_unbiased(x: FloatArray, y: FloatArray, bandwidth: float | None = None) -> float:
    """The unbiased MMD² between samples ``x`` (n x d) and ``y`` (m x d), RBF kernel.

    ``bandwidth`` is σ² (squared distance unit); the median heuristic of the pooled sample if None.
    The estimate can be slightly negative when the distributions are equal.
    """
    xs, ys = _as_matrix(x, "x"), _as_matrix(y, "y")
    n = xs.shape[0]
    d2 = squared_distances(np.vstack([xs, ys]))
    sigma2 = bandwidth if bandwidth is not None else median_bandwidth(d2)
    k = np.exp(-d2 / (2.0 * sigma2))
    np.fill_diagonal(k, 0.0)
    sxx = k[:n, :n].sum()
    syy = k[n:, n:].sum()
    sxy = k[:n, n:].sum()
    return float(_mmd2_from_sums(sxx, syy, sxy, n, ys.shape[0]))


def mmd_permutation_test(
    x: FloatArray, y: FloatArray, *, n_permutations: int = 1000, alpha: float = 0.001,
    min_statistic: float = 0.0, seed: int = 0,
) -> DetectorResult:  # fmt: skip
    """Kernel two-sample test of ``x`` (reference, n x d) against ``y`` (current, m x d).

    Cost: one (n + m)² kernel matrix, then ``n_permutations`` relabellings evaluated as matrix
    products in batches, O((n + m)² · n_permutations) flops; ~20 ms for 100 + 100 items and 1000
    permutations. Deterministic for a given ``seed``.

    Raises ValueError when ``alpha · (n_permutations + 1) < 1``: with so few permutations the
    smallest reachable p-value is above ``alpha`` and the test could never fire.
    """
    if n_permutations < 1:
        raise ValueError("n_permutations must be >= 1")
    k_crit = math.floor(alpha * (n_permutations + 1))
    if k_crit < 1:
        raise ValueError(f"alpha={alpha} needs at least {math.ceil(1 / alpha) - 1} permutations")
    xs, ys = _as_matrix(x, "x"), _as_matrix(y, "y")
    n, m = xs.shape[0], ys.shape[0]
    d2 = squared_distances(np.vstack([xs, ys]))
    sigma2 = median_bandwidth(d2)
    kern = np.exp(-d2 / (2.0 * sigma2))
    np.fill_diagonal(kern, 0.0)  # the unbiased estimator drops i == j terms

    # With a membership indicator a (1 = "in x"), and K without its diagonal:
    #   Sxx = aᵀKa,  Sxy = aᵀK1 - Sxx,  Syy = 1ᵀK1 - 2 aᵀK1 + Sxx,
    # so a batch of relabellings costs one matrix product.
    row_sums = kern.sum(axis=1)
    total = float(row_sums.sum())

    def statistics(members: FloatArray) -> FloatArray:
        ka = kern @ members
        sxx = np.einsum("ij,ij->j", members, ka)
        a_r = members.T @ row_sums
        return _mmd2_from_sums(sxx, total - 2.0 * a_r + sxx, a_r - sxx, n, m)

    observed_members = np.zeros((n + m, 1))
    observed_members[:n] = 1.0
    observed = float(statistics(observed_members)[0])

    rng = np.random.default_rng(seed)
    labels = np.tile(observed_members, (1, _PERMUTATION_BATCH))
    null = np.empty(n_permutations)
    done = 0
    while done < n_permutations:
        batch = min(_PERMUTATION_BATCH, n_permutations - done)
        # each column shuffled independently: one random relabelling per column
        members = rng.permuted(labels[:, :batch], axis=0)
        null[done : done + batch] = statistics(members)
        done += batch

    critical = float(np.sort(null)[-k_crit])
    threshold = max(critical, min_statistic)
    p_value = (1 + int(np.count_nonzero(null >= observed))) / (1 + n_permutations)
    return DetectorResult(
        score=observed,
        threshold=threshold,
        drift=observed > threshold,
        details={
            "p_value": p_value,
            "alpha": alpha,
            "critical": critical,
            "min_statistic": min_statistic,
            "bandwidth_sigma2": sigma2,
            "n_permutations": n_permutations,
        },
    )


def mean_drop(reference: FloatArray, current: FloatArray, threshold: float) -> DetectorResult:
    """Drift when ``mean(reference) - mean(current) > threshold`` (e.g. top-1 retrieval score fell)."""
    ref_mean, cur_mean = float(np.mean(reference)), float(np.mean(current))
    score = ref_mean - cur_mean
    return DetectorResult(
        score=score, threshold=threshold, drift=score > threshold,
        details={"reference_mean": ref_mean, "current_mean": cur_mean},
    )  # fmt: skip


def rate_rise(reference: FloatArray, current: FloatArray, threshold: float) -> DetectorResult:
    """Drift when the share of true (non-zero) items rose by more than ``threshold`` (0..1 units)."""
    ref_rate = float(np.mean(np.asarray(reference) != 0))
    cur_rate = float(np.mean(np.asarray(current) != 0))
    score = cur_rate - ref_rate
    return DetectorResult(
        score=score, threshold=threshold, drift=score > threshold,
        details={"reference_rate": ref_rate, "current_rate": cur_rate},
    )  # fmt: skip
