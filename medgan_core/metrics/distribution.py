"""Set-level distances in a feature space: RBF-kernel MMD and precision/recall/density/coverage.

Both take features (N, D), typically :meth:`~medgan_core.metrics.encoder.Encoder.features`
of real and synthetic samples. Distances are exact Euclidean (``scipy.spatial.distance
.cdist``) computed block by block, so memory is O(block * N) rather than O(N^2).

* MMD (Gretton et al. 2012): ``MMD^2 = E k(x,x') + E k(y,y') - 2 E k(x,y)`` with
  ``k(a, b) = exp(-||a-b||^2 / (2 bandwidth^2))``. The unbiased estimator drops the
  ``i == j`` terms and can be slightly negative when the sets match.
* PRDC (Naeem et al. 2020, logic of the official ``prdc`` package): each real sample gets a
  ball whose radius is the distance to its k-th nearest real neighbour. Precision = share of
  synthetic samples inside some real ball (fidelity); recall = share of real samples inside
  some synthetic ball (diversity); density = mean number of real balls containing a
  synthetic sample, divided by k (can exceed 1); coverage = share of real balls holding at
  least one synthetic sample. Comparisons are strict (``<``) as in ``prdc``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.distance import cdist, pdist

from medgan_core.metrics._arrays import as_float64

__all__ = ["PRDC", "median_heuristic_bandwidth", "mmd2", "prdc"]

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class PRDC:
    """Precision, recall, density and coverage of a synthetic set against a real one."""

    precision: float
    recall: float
    density: float
    coverage: float


def _pair(x: ArrayLike, y: ArrayLike, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_float64(names[0], x, ndim=2), as_float64(names[1], y, ndim=2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature dimensions differ: {names[0]} {a.shape}, {names[1]} {b.shape}; "
            "embed both sets with the same extractor."
        )
    return a, b


def median_heuristic_bandwidth(x: ArrayLike, y: ArrayLike, *, max_samples: int = 1000) -> float:
    """Median pairwise Euclidean distance of the pooled sample (Gretton et al. 2012).

    Above ``max_samples`` pooled points a fixed-seed random subset is used, so the value
    is reproducible and costs O(max_samples^2).

    Raises:
        ValueError: If all pooled samples coincide (the median distance is 0).
    """
    a, b = _pair(x, y, ("x", "y"))
    pooled = np.vstack([a, b])
    if pooled.shape[0] > max_samples:
        keep = np.random.default_rng(0).choice(pooled.shape[0], max_samples, replace=False)
        pooled = pooled[keep]
    median = float(np.median(pdist(pooled))) if pooled.shape[0] > 1 else 0.0
    if median <= 0.0:
        raise ValueError("median pairwise distance is 0 (samples coincide); pass bandwidth=.")
    return median


def _kernel_sum(a: np.ndarray, b: np.ndarray, gamma: float, block: int) -> float:
    """Sum of ``exp(-gamma * ||a_i - b_j||^2)`` over all pairs, block by block."""
    return sum(
        float(np.exp(-gamma * cdist(a[i : i + block], b, "sqeuclidean")).sum())
        for i in range(0, a.shape[0], block)
    )


def mmd2(
    x: ArrayLike,
    y: ArrayLike,
    *,
    bandwidth: float | None = None,
    unbiased: bool = True,
    block_size: int = 2048,
) -> float:
    """Squared maximum mean discrepancy with an RBF kernel.

    Args:
        x: Features (M, D) of one set (e.g. real).
        y: Features (N, D) of the other set (e.g. synthetic).
        bandwidth: Kernel width sigma; ``None`` uses :func:`median_heuristic_bandwidth`.
            Fix it explicitly when comparing runs, since the heuristic moves with the data.
        unbiased: Use the unbiased U-statistic (needs M, N >= 2) instead of the V-statistic.
        block_size: Rows per distance block (memory is block_size * max(M, N)).

    Returns:
        MMD^2 (the biased value is >= 0; the unbiased one may dip slightly below 0).

    Raises:
        ValueError: On bad shapes, a non-positive bandwidth, or too few samples.
    """
    a, b = _pair(x, y, ("x", "y"))
    m, n = a.shape[0], b.shape[0]
    if unbiased and min(m, n) < 2:
        raise ValueError(f"unbiased MMD needs >= 2 samples per set, got {m} and {n}.")
    sigma = median_heuristic_bandwidth(a, b) if bandwidth is None else float(bandwidth)
    if not sigma > 0.0:
        raise ValueError(f"bandwidth={bandwidth} must be > 0.")
    gamma = 1.0 / (2.0 * sigma**2)
    k_xx = _kernel_sum(a, a, gamma, block_size)
    k_yy = _kernel_sum(b, b, gamma, block_size)
    k_xy = _kernel_sum(a, b, gamma, block_size)
    if unbiased:  # k(x, x) = 1, so the diagonal contributes exactly m (resp. n)
        return (k_xx - m) / (m * (m - 1)) + (k_yy - n) / (n * (n - 1)) - 2.0 * k_xy / (m * n)
    return k_xx / m**2 + k_yy / n**2 - 2.0 * k_xy / (m * n)


def _knn_radii(x: np.ndarray, k: int, block: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row (self counts as the 0-th)."""
    blocks = [
        np.partition(cdist(x[i : i + block], x), k, axis=1)[:, k]
        for i in range(0, x.shape[0], block)
    ]
    return np.concatenate(blocks)


def prdc(
    real: ArrayLike, synthetic: ArrayLike, *, nearest_k: int = 5, block_size: int = 2048
) -> PRDC:
    """Precision, recall, density and coverage (Naeem et al. 2020) in feature space.

    Args:
        real: Real features (N, D).
        synthetic: Synthetic features (M, D).
        nearest_k: k of the k-NN radii (the paper uses 5).
        block_size: Real rows per distance block.

    Returns:
        The four scores; precision, recall and coverage are in [0, 1].

    Raises:
        ValueError: On bad shapes or ``nearest_k`` not in ``1 .. min(N, M) - 1``.
    """
    r, s = _pair(real, synthetic, ("real", "synthetic"))
    if not 1 <= nearest_k < min(r.shape[0], s.shape[0]):
        raise ValueError(
            f"nearest_k={nearest_k} must be in 1..{min(r.shape[0], s.shape[0]) - 1} "
            "(fewer than the samples in each set)."
        )
    real_radii = _knn_radii(r, nearest_k, block_size)  # (N,)
    fake_radii = _knn_radii(s, nearest_k, block_size)  # (M,)
    balls_per_fake = np.zeros(s.shape[0], dtype=np.int64)  # real balls containing each fake
    recalled = np.zeros(r.shape[0], dtype=bool)
    covered = np.zeros(r.shape[0], dtype=bool)
    for i in range(0, r.shape[0], block_size):
        dist = cdist(r[i : i + block_size], s)  # (block, M)
        inside_real = dist < real_radii[i : i + block_size, None]
        balls_per_fake += inside_real.sum(axis=0)
        recalled[i : i + block_size] = (dist < fake_radii[None, :]).any(axis=1)
        covered[i : i + block_size] = inside_real.any(axis=1)
    return PRDC(
        precision=float((balls_per_fake > 0).mean()),
        recall=float(recalled.mean()),
        density=float(balls_per_fake.mean() / nearest_k),
        coverage=float(covered.mean()),
    )
