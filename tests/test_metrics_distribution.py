"""MMD and PRDC against brute-force references, the authors' `prdc` package, and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medgan_core.metrics.distribution import median_heuristic_bandwidth, mmd2, prdc


def reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Logic of ``prdc.compute_prdc`` (Naeem et al. 2020), written as plain loops."""

    def dist(a: np.ndarray, b: np.ndarray) -> float:
        return math.sqrt(sum((ai - bi) ** 2 for ai, bi in zip(a, b)))

    def radii(x: np.ndarray) -> list[float]:
        # k + 1 because the 0-th nearest neighbour of a point is itself.
        return [sorted(dist(p, q) for q in x)[k] for p in x]

    r_real, r_fake = radii(real), radii(fake)
    d = [[dist(p, q) for q in fake] for p in real]  # real x fake
    n, m = len(real), len(fake)
    precision = sum(any(d[i][j] < r_real[i] for i in range(n)) for j in range(m)) / m
    recall = sum(any(d[i][j] < r_fake[j] for j in range(m)) for i in range(n)) / n
    density = sum(sum(d[i][j] < r_real[i] for i in range(n)) for j in range(m)) / (k * m)
    coverage = sum(min(d[i]) < r_real[i] for i in range(n)) / n
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def reference_mmd2(x: np.ndarray, y: np.ndarray, sigma: float, unbiased: bool) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma**2))

    m, n = len(x), len(y)
    skip = unbiased  # U-statistic: leave out i == j
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if not (skip and i == j))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if not (skip and i == j))
    xy = sum(k(a, b) for a in x for b in y)
    if unbiased:
        return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n)
    return xx / m**2 + yy / n**2 - 2 * xy / (m * n)


@pytest.mark.parametrize("shift", [0.0, 0.7, 2.0])
def test_prdc_matches_reference(shift: float) -> None:
    rng = np.random.default_rng(0)
    real = rng.standard_normal((40, 4))
    fake = 1.3 * rng.standard_normal((35, 4)) + shift
    got = prdc(real, torch.from_numpy(fake), nearest_k=3, block_size=7)  # blocks do not divide N
    expected = reference_prdc(real, fake, k=3)
    for name, value in expected.items():
        assert getattr(got, name) == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize(("n_real", "n_fake", "dim", "k", "shift"), [
    (200, 150, 16, 5, 0.0), (120, 300, 8, 3, 0.5), (300, 300, 64, 5, 0.2), (50, 60, 2, 1, 0.2),
])
def test_prdc_matches_naeem_reference_package(n_real: int, n_fake: int, dim: int, k: int, shift: float) -> None:
    # The authors' own implementation (pip package ``prdc``), on random features.
    compute_prdc = pytest.importorskip("prdc").compute_prdc
    rng = np.random.default_rng(n_real + dim)
    real = rng.standard_normal((n_real, dim))
    fake = 1.2 * rng.standard_normal((n_fake, dim)) + shift

    got = prdc(real, fake, nearest_k=k, block_size=64)  # several blocks
    expected = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)

    for name in ("precision", "recall", "density", "coverage"):
        assert getattr(got, name) == pytest.approx(float(expected[name]), abs=1e-6), name


def test_prdc_identical_sets_are_perfect() -> None:
    x = np.random.default_rng(1).standard_normal((50, 6))
    result = prdc(x, x.copy(), nearest_k=5)
    assert (result.precision, result.recall, result.coverage) == (1.0, 1.0, 1.0)
    assert result.density == pytest.approx(reference_prdc(x, x, 5)["density"])


def test_prdc_far_apart_sets_score_zero() -> None:
    rng = np.random.default_rng(2)
    real = rng.standard_normal((30, 3))
    fake = rng.standard_normal((30, 3)) + 100.0
    result = prdc(real, fake, nearest_k=5)
    assert (result.precision, result.recall, result.density, result.coverage) == (0, 0, 0, 0)


def test_prdc_mode_collapse_keeps_precision_but_loses_coverage() -> None:
    # A detector must fire: all synthetic samples near one real point.
    rng = np.random.default_rng(3)
    real = rng.standard_normal((100, 2)) * 5.0
    fake = real[0] + 0.01 * rng.standard_normal((100, 2))
    result = prdc(real, fake, nearest_k=5)
    assert result.precision == 1.0
    assert result.coverage < 0.1 and result.recall < 0.1


@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_matches_reference_with_median_bandwidth(unbiased: bool) -> None:
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((25, 3)), rng.standard_normal((20, 3)) + 0.5
    pooled = np.vstack([x, y])
    pairs = [np.linalg.norm(p - q) for i, p in enumerate(pooled) for q in pooled[i + 1 :]]
    sigma = float(np.median(pairs))
    assert median_heuristic_bandwidth(x, y) == pytest.approx(sigma)
    got = mmd2(x, y, unbiased=unbiased, block_size=6)
    assert got == pytest.approx(reference_mmd2(x, y, sigma, unbiased), abs=1e-12)


def test_mmd_of_a_set_with_itself() -> None:
    x = np.random.default_rng(5).standard_normal((200, 5))
    assert mmd2(x, x, bandwidth=2.0, unbiased=False) == pytest.approx(0.0, abs=1e-12)
    # The U-statistic equals (2/m)(mean off-diagonal kernel - 1): tiny and negative.
    unbiased = mmd2(x, x, bandwidth=2.0, unbiased=True)
    assert -2.0 / 200 <= unbiased <= 0.0


def test_mmd_grows_with_mean_shift() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((300, 4))
    noise = rng.standard_normal((300, 4))
    values = [mmd2(x, noise + shift, bandwidth=2.0) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert abs(values[0]) < 0.01
    assert all(a < b for a, b in zip(values, values[1:]))


def test_invalid_arguments_are_rejected() -> None:
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="feature dimensions differ"):
        mmd2(x, np.zeros((10, 4)))
    with pytest.raises(ValueError, match="samples coincide"):
        mmd2(x, x)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2(x, x, bandwidth=0.0)
    with pytest.raises(ValueError, match="nearest_k=10"):
        prdc(np.random.default_rng(7).standard_normal((10, 3)), np.ones((20, 3)), nearest_k=10)
