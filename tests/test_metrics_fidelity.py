"""PSNR, SSIM and nearest-neighbour errors against hand-computed values and slow references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medgan_core.metrics.fidelity import nearest_neighbour_fidelity, psnr, ssim


def reference_ssim_2d(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Wang et al. (2004) written out: weighted moments of every full 11x11 window."""
    coords = np.arange(11) - 5
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cov = (w * (px - mx) * (py - my)).sum()
            num = (2 * mx * my + c1) * (2 * cov + c2)
            values.append(num / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def reference_ssim_1d(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    coords = np.arange(11) - 5
    w = np.exp(-(coords**2) / (2 * 1.5**2))
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(len(x) - 10):
        px, py = x[i : i + 11], y[i : i + 11]
        mx, my = (w * px).sum(), (w * py).sum()
        vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
        cov = (w * (px - mx) * (py - my)).sum()
        num = (2 * mx * my + c1) * (2 * cov + c2)
        values.append(num / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def _images(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def test_psnr_hand_computed() -> None:
    x = torch.zeros(2, 1, 4, 4)
    y = torch.full((2, 1, 4, 4), 0.1)
    y[1] = 0.0
    out = psnr(x, y, data_range=1.0)
    assert out[0].item() == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert math.isinf(out[1].item())
    assert psnr(x[:1], y[:1], data_range=2.0).item() == pytest.approx(10 * math.log10(4 / 0.01))


def test_ssim_of_identical_inputs_is_one() -> None:
    x, _ = _images(0, (3, 2, 16, 16))
    torch.testing.assert_close(ssim(x, x, data_range=1.0), torch.ones(3, dtype=torch.float64))
    beats = torch.randn(4, 1, 128, generator=torch.Generator().manual_seed(1))
    ones = torch.ones(4, dtype=torch.float64)
    torch.testing.assert_close(ssim(beats, beats, data_range=4.0), ones)


def test_ssim_2d_matches_direct_reference() -> None:
    x, y = _images(2, (2, 1, 20, 24))
    got = ssim(x, y, data_range=1.0)
    for i in range(2):
        expected = reference_ssim_2d(x[i, 0].numpy(), y[i, 0].numpy(), 1.0)
        assert got[i].item() == pytest.approx(expected, abs=1e-12)


def test_ssim_1d_matches_direct_reference_and_drops_with_noise() -> None:
    x, y = _images(3, (2, 1, 64))
    got = ssim(x, y, data_range=1.0)
    for i in range(2):
        expected = reference_ssim_1d(x[i, 0].numpy(), y[i, 0].numpy(), 1.0)
        assert got[i].item() == pytest.approx(expected, abs=1e-12)
    g = torch.Generator().manual_seed(4)
    noisier = x + 0.5 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    assert torch.all(ssim(x, noisier, data_range=1.0) < got)


def test_ssim_matches_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    x, y = _images(5, (1, 1, 40, 33))
    expected = metrics.structural_similarity(
        x[0, 0].numpy(), y[0, 0].numpy(), data_range=1.0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )  # fmt: skip
    assert ssim(x, y, data_range=1.0).item() == pytest.approx(expected, abs=1e-10)


def test_nearest_neighbour_errors_hand_computed() -> None:
    real = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    synthetic = torch.tensor([[1.0, 1.0], [9.0, 8.0]])  # neighbours: real[0], real[1]
    result = nearest_neighbour_fidelity(synthetic, real, block_size=1)
    rmse = np.array([1.0, math.sqrt(2.5)])  # diffs (1, 1) and (-1, -2)
    mae = np.array([1.0, 1.5])
    assert result.rmse_mean == pytest.approx(rmse.mean())
    assert result.rmse_std == pytest.approx(rmse.std())
    assert result.mae_mean == pytest.approx(mae.mean())
    assert result.mae_std == pytest.approx(mae.std())


def test_copied_training_samples_score_zero_error() -> None:
    # The red flag the docstring warns about: memorised samples look "perfect".
    real = torch.randn(50, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    result = nearest_neighbour_fidelity(real[10:30].clone(), real)
    assert result.rmse_mean == 0.0 and result.mae_mean == 0.0


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match=">= 11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), data_range=1.0)
    with pytest.raises(ValueError, match="equal-shaped"):
        psnr(torch.zeros(1, 4), torch.zeros(2, 4), data_range=1.0)
    with pytest.raises(ValueError, match="data_range"):
        psnr(torch.zeros(1, 4), torch.ones(1, 4), data_range=0.0)
    with pytest.raises(ValueError, match="same per-sample shape"):
        nearest_neighbour_fidelity(torch.zeros(3, 4), torch.zeros(3, 5))
