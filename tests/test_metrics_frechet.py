"""Fréchet distance: closed forms, streaming = one-shot, and the TorchScript loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medgan_core.metrics.frechet import (
    FrechetDistance,
    TorchScriptFeatureExtractor,
    feature_statistics,
    frechet_distance,
)


def _random_spd(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.standard_normal((dim, dim))
    return a @ a.T + 0.1 * np.eye(dim)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(m)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def test_hand_computed_diagonal_gaussians() -> None:
    # |(0,0) - (3,4)|^2 = 25; diagonal covariances: sum (sqrt(s1) - sqrt(s2))^2 = 1 + 1.
    fd = frechet_distance(
        np.zeros(2), np.diag([1.0, 4.0]), np.array([3.0, 4.0]), np.diag([4.0, 9.0])
    )
    assert fd == pytest.approx(27.0, abs=1e-9)


def test_matches_symmetric_closed_form_for_full_covariances() -> None:
    # W2^2 = |mu1-mu2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2, via eigh (not sqrtm).
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    s1, s2 = _random_spd(rng, 6), _random_spd(rng, 6)
    root1 = _psd_sqrt(s1)
    expected = (
        np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
        - 2 * np.trace(_psd_sqrt(root1 @ s2 @ root1))
    )  # fmt: skip
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_same_statistics_give_zero_even_when_singular() -> None:
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((5, 8))  # 5 samples in 8-D: singular covariance
    mu, sigma = feature_statistics(feats)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-5)


def test_feature_statistics_match_numpy() -> None:
    feats = np.random.default_rng(2).standard_normal((50, 4))
    mu, sigma = feature_statistics(torch.from_numpy(feats))
    np.testing.assert_allclose(mu, feats.mean(axis=0))
    np.testing.assert_allclose(sigma, np.cov(feats.T))


def test_streaming_equals_one_shot_with_large_feature_offset() -> None:
    rng = np.random.default_rng(3)
    real = rng.standard_normal((300, 5)) + 1e4  # offset that breaks naive E[xx^T] - mu mu^T
    fake = 1.5 * rng.standard_normal((200, 5)) + 1e4 + 0.3
    metric = FrechetDistance(lambda x: x)
    for chunk in np.array_split(real, 7):
        metric.update(torch.from_numpy(chunk), real=True)
    for chunk in np.array_split(fake, 3):
        metric.update(torch.from_numpy(chunk), real=False)
    expected = frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    assert metric.compute() == pytest.approx(expected, rel=1e-9)


def test_same_data_as_real_and_fake_gives_zero() -> None:
    x = torch.from_numpy(np.random.default_rng(4).standard_normal((400, 8)))
    metric = FrechetDistance(lambda batch: batch * 2.0)
    metric.update(x, real=True)
    metric.update(x, real=False)
    assert metric.compute() == pytest.approx(0.0, abs=1e-6)


def test_distance_grows_with_mean_shift() -> None:
    rng = np.random.default_rng(5)
    real = torch.from_numpy(rng.standard_normal((500, 4)))
    values = []
    for shift in (0.0, 1.0, 2.0):
        metric = FrechetDistance(lambda x: x)
        metric.update(real, real=True)
        metric.update(torch.from_numpy(rng.standard_normal((500, 4))) + shift, real=False)
        values.append(metric.compute())
    assert values[0] < values[1] < values[2]
    assert values[2] == pytest.approx(4 * 4.0, rel=0.15)  # |shift|^2 = 4 dims * 2^2


def test_reset_keeps_real_statistics_when_asked() -> None:
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(6))
    metric = FrechetDistance(lambda batch: batch, reset_real_features=False)
    metric.update(x, real=True)
    metric.update(x, real=False)
    metric.reset()
    assert metric.real_sums is not None and metric.fake_sums is None
    with pytest.raises(RuntimeError, match="synthetic side has 0"):
        metric.compute()


def test_mismatched_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="shapes disagree"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    metric = FrechetDistance(lambda x: x)
    metric.update(torch.zeros(4, 2), real=True)
    with pytest.raises(ValueError, match="feature dimension changed"):
        metric.update(torch.zeros(4, 3), real=True)


class _TinyPool(torch.nn.Module):
    """Stands in for Inception: mean of each channel, with the StyleGAN keyword."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        return pooled if return_features else pooled.sum(dim=1, keepdim=True)


# torch.jit is deprecated upstream, but the Inception file is TorchScript; a 3-channel copy
# of one grayscale channel also makes the covariance singular on purpose.
@pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_torchscript_extractor_loads_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(_TinyPool()), str(path))
    extractor = TorchScriptFeatureExtractor(path, input_range=(-1.0, 1.0))
    images = torch.zeros(2, 1, 8, 8)
    images[1] = 1.0
    feats = extractor(images)  # [-1, 1] -> [0, 255]; grayscale repeated to 3 channels
    torch.testing.assert_close(feats, torch.tensor([[127.5] * 3, [255.0] * 3]))
    metric = FrechetDistance(extractor)
    metric.update(torch.rand(6, 1, 8, 8) * 2 - 1, real=True)
    metric.update(torch.rand(6, 1, 8, 8) * 2 - 1, real=False)
    assert metric.compute() >= 0.0


def test_missing_torchscript_file_names_path_and_expected_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "inception.pt"
    with pytest.raises(FileNotFoundError) as info:
        TorchScriptFeatureExtractor(missing)
    assert str(missing) in str(info.value)
    assert "inception-2015-12-05.pt" in str(info.value)
    assert "never downloads" in str(info.value)
