"""DTW against a brute-force O(nm) reference and its defining invariants."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from medgan_core.metrics._dtw_kernels import load_dtaidistance
from medgan_core.metrics.dtw import (
    band_radius,
    dtw_distance,
    dtw_matrix,
    mean_nn_dtw,
    to_dtaidistance_window,
)

BACKENDS = [
    "numpy",
    pytest.param(
        "dtaidistance",
        marks=pytest.mark.skipif(load_dtaidistance() is None, reason="dtaidistance C missing"),
    ),
]


def brute_force_dtw(x: np.ndarray, y: np.ndarray, radius: int | None) -> float:
    """Textbook full-matrix DP; the band is |j - i| <= r widened by the length difference."""
    n, m = len(x), len(y)
    if radius is None:
        lo, hi = -(n - 1), m - 1
    else:
        lo, hi = -(radius + max(0, n - m)), radius + max(0, m - n)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(n):
        for j in range(m):
            if lo <= j - i <= hi:
                best = min(acc[i, j], acc[i, j + 1], acc[i + 1, j])
                acc[i + 1, j + 1] = (x[i] - y[j]) ** 2 + best
    return math.sqrt(acc[n, m])


def _random_pairs(seed: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 25, size=(count, 2))
    return [(rng.standard_normal(n), rng.standard_normal(m)) for n, m in lengths]


def test_hand_computed_example() -> None:
    # Cost rows (x_i - y_j)^2: [0, 4], [1, 1], [4, 0]; best path (0,0)->(1,0)->(2,1) costs 1.
    assert dtw_distance(np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0])) == pytest.approx(1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_matches_brute_force_on_unequal_lengths(backend: str) -> None:
    for x, y in _random_pairs(seed=0, count=40):
        got = dtw_distance(x, y, backend=backend)
        assert got == pytest.approx(brute_force_dtw(x, y, None), abs=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("radius", [0, 1, 3, 7])
def test_banded_matches_brute_force_on_unequal_lengths(backend: str, radius: int) -> None:
    for x, y in _random_pairs(seed=radius + 1, count=25):
        got = dtw_distance(x, y, window=radius, backend=backend)
        assert got == pytest.approx(brute_force_dtw(x, y, radius), abs=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matrix_matches_pairwise_brute_force_with_fractional_window(backend: str) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 20)), rng.standard_normal((5, 13))
    out = dtw_matrix(a, b, window=0.25, backend=backend)  # radius floor(0.25 * 20) = 5
    expected = [[brute_force_dtw(x, y, 5) for y in b] for x in a]
    np.testing.assert_allclose(out, expected, atol=1e-10)


def test_numpy_chunking_covers_every_pair() -> None:
    # 2**18 / 16 = 16384 pairs per chunk: 130 x 140 pairs span two chunks.
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((130, 16)), rng.standard_normal((140, 16))
    out = dtw_matrix(a, b, window=2, backend="numpy")
    for i, j in [(0, 0), (129, 139), (117, 3), (64, 70)]:
        assert out[i, j] == pytest.approx(brute_force_dtw(a[i], b[j], 2), abs=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_distance_is_zero_and_symmetric(backend: str) -> None:
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((6, 30)), rng.standard_normal((7, 30))
    assert np.all(np.diag(dtw_matrix(a, a, window=None, backend=backend)) == 0.0)
    assert np.all(np.diag(dtw_matrix(a, a, window=0, backend=backend)) == 0.0)
    np.testing.assert_allclose(
        dtw_matrix(a, b, window=4, backend=backend),
        dtw_matrix(b, a, window=4, backend=backend).T,
        atol=1e-12,
    )


def test_infinite_or_full_band_equals_exact() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((5, 21)), rng.standard_normal((6, 17))
    exact = dtw_matrix(a, b, window=None, backend="numpy")
    for window in (math.inf, 1.0, 21, 10_000):
        np.testing.assert_array_equal(dtw_matrix(a, b, window=window, backend="numpy"), exact)


def test_band_never_below_exact_and_radius_zero_is_euclidean() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((8, 32)), rng.standard_normal((9, 32))
    exact = dtw_matrix(a, b, backend="numpy")
    for radius in (0, 1, 4, 16):
        assert np.all(dtw_matrix(a, b, window=radius, backend="numpy") >= exact - 1e-12)
    euclid = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    np.testing.assert_allclose(dtw_matrix(a, b, window=0, backend="numpy"), euclid, atol=1e-12)
    assert np.all(exact <= euclid + 1e-12)


@pytest.mark.skipif(load_dtaidistance() is None, reason="dtaidistance C missing")
def test_dtaidistance_backend_is_finite_on_near_copies() -> None:
    # dtaidistance's pruning returns inf here; a near-copy is the case privacy audits need.
    rng = np.random.default_rng(8)
    real = rng.standard_normal((10, 64)) * 50.0
    copies = real + 1e-9 * rng.standard_normal(real.shape)
    for window in (0, None):
        out = dtw_matrix(copies, real, window=window, backend="dtaidistance")
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, dtw_matrix(copies, real, window=window, backend="numpy"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_nn_dtw_against_matrix_minima(backend: str) -> None:
    rng = np.random.default_rng(9)
    real = torch.from_numpy(rng.standard_normal((12, 24)))
    synthetic = np.vstack([real[:3].numpy(), rng.standard_normal((5, 24))])
    result = mean_nn_dtw(synthetic, real, window=3, backend=backend)
    full = np.array([[brute_force_dtw(s, r, 3) for r in real.numpy()] for s in synthetic])
    assert result.synthetic_to_real == pytest.approx(full.min(axis=1).mean(), abs=1e-10)
    assert result.real_to_synthetic == pytest.approx(full.min(axis=0).mean(), abs=1e-10)
    assert result.symmetric == pytest.approx(
        0.5 * (result.synthetic_to_real + result.real_to_synthetic)
    )


def test_copied_beats_have_zero_nearest_neighbour_distance() -> None:
    rng = np.random.default_rng(10)
    real = rng.standard_normal((6, 40))
    assert mean_nn_dtw(real[:4], real, window=0.1).synthetic_to_real == 0.0


def test_window_resolution_and_dtaidistance_mapping() -> None:
    assert band_radius(None, 10, 12) is None
    assert band_radius(math.inf, 10, 12) is None
    assert band_radius(3, 100, 100) == 3
    assert band_radius(0.1, 128, 100) == 12  # floor(0.1 * max(n, m))
    assert band_radius(127, 128, 128) is None  # covers every cell
    assert to_dtaidistance_window(3, 100, 100) == 4
    assert to_dtaidistance_window(None, 100, 100) is None


@pytest.mark.parametrize("window", [-1, 1.5, float("nan"), True, "5"])
def test_invalid_window_is_rejected(window: object) -> None:
    with pytest.raises(ValueError, match="window"):
        dtw_distance(np.zeros(4), np.zeros(4), window=window)  # type: ignore[arg-type]


def test_invalid_inputs_and_backend_are_rejected() -> None:
    with pytest.raises(ValueError, match="backend"):
        dtw_distance(np.zeros(4), np.zeros(4), backend="cuda")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        dtw_distance(np.array([0.0, np.nan]), np.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        dtw_matrix(np.zeros((0, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dimension"):
        dtw_matrix(np.zeros(4), np.zeros((2, 4)))


def test_auto_backend_falls_back_to_numpy_without_dtaidistance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("medgan_core.metrics.dtw.load_dtaidistance", lambda: None)
    x, y = np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0])
    assert dtw_distance(x, y, backend="auto") == pytest.approx(1.0)
    with pytest.raises(ImportError, match="pip install dtaidistance"):
        dtw_distance(x, y, backend="dtaidistance")


def test_metrics_package_never_imports_flower() -> None:
    # The core must stay testable without a federation (STYLE.md, layout).
    code = "import sys, medgan_core.metrics; sys.exit('flwr' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
