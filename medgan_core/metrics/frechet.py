"""Fréchet distance between Gaussian fits of two feature sets (FID-style), extractor injected.

``FD = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` is the 2-Wasserstein distance
between ``N(mu1, S1)`` and ``N(mu2, S2)`` (Dowson & Landau 1982; FID, Heusel et al. 2017).
It only means something in a feature space where distance tracks what we care about:
pass :meth:`medgan_core.metrics.encoder.Encoder.features` for ECG/X-ray domain features, or
a :class:`TorchScriptFeatureExtractor` around the standard Inception-v3 to report a
conventional FID. Numbers from different extractors are not comparable. Weights are only
ever loaded from disk; nothing here downloads.

Pure functions (:func:`feature_statistics`, :func:`update_feature_sums`,
:func:`statistics_from_sums`, :func:`frechet_distance`) do the math; the
:class:`FrechetDistance` class only holds running sums, as in ``torchmetrics`` FID.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg
import torch

from medgan_core.metrics._arrays import as_float64

__all__ = [
    "FeatureSums",
    "FrechetDistance",
    "TorchScriptFeatureExtractor",
    "feature_statistics",
    "frechet_distance",
    "inception_fid",
    "statistics_from_sums",
    "update_feature_sums",
]

logger = logging.getLogger(__name__)

INCEPTION_FILENAME = "inception-2015-12-05.pt"
_INCEPTION_SOURCE = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
    + INCEPTION_FILENAME
)


class FeatureSums(NamedTuple):
    """Sufficient statistics of a feature stream, shifted for numerical stability.

    Summing ``x - shift`` rather than ``x`` (with ``shift`` = mean of the first batch)
    avoids the catastrophic cancellation of ``E[x x^T] - mu mu^T`` when features have a
    large common offset. Everything is float64 on the CPU.
    """

    shift: torch.Tensor  # (D,)
    total: torch.Tensor  # (D,)   sum of (x - shift)
    outer: torch.Tensor  # (D, D) sum of (x - shift)(x - shift)^T
    count: int


def _check_features(features: torch.Tensor) -> torch.Tensor:
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(
            f"features must be a non-empty (N, D) tensor, got shape {tuple(features.shape)}; "
            "make the feature extractor return one flat vector per sample."
        )
    feats = features.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(feats).all():
        raise ValueError("features contain NaN/inf; check the extractor and its inputs.")
    return feats


def update_feature_sums(sums: FeatureSums | None, features: torch.Tensor) -> FeatureSums:
    """Add a batch of features (N, D) to ``sums`` (``None`` starts a new stream).

    Raises:
        ValueError: If ``features`` is not a finite (N, D) tensor or D changed.
    """
    feats = _check_features(features)
    if sums is None:
        dim = feats.shape[1]
        sums = FeatureSums(
            feats.mean(dim=0), torch.zeros(dim, dtype=torch.float64),
            torch.zeros(dim, dim, dtype=torch.float64), 0,
        )  # fmt: skip
    elif feats.shape[1] != sums.total.shape[0]:
        raise ValueError(
            f"feature dimension changed from {sums.total.shape[0]} to {feats.shape[1]}; "
            "use one extractor per stream, or reset() before switching."
        )
    centred = feats - sums.shift
    return FeatureSums(
        sums.shift, sums.total + centred.sum(dim=0), sums.outer + centred.T @ centred,
        sums.count + feats.shape[0],
    )  # fmt: skip


def statistics_from_sums(sums: FeatureSums) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) from running sums, as ``np.cov`` gives.

    Raises:
        ValueError: With fewer than two samples (the covariance is undefined).
    """
    if sums.count < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {sums.count}.")
    n = sums.count
    mean_centred = sums.total / n
    sigma = (sums.outer - n * torch.outer(mean_centred, mean_centred)) / (n - 1)
    return (sums.shift + mean_centred).numpy(), sigma.numpy()


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64.

    Raises:
        ValueError: If ``features`` is not a finite (N, D) array with N >= 2.
    """
    feats = as_float64("features", features, ndim=2)
    if feats.shape[0] < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {feats.shape[0]}.")
    return feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *, eps: float = 1e-6
) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Follows ``pytorch-fid``: if ``sqrtm(sigma1 @ sigma2)`` is not finite (singular
    product), ``eps`` is added to both diagonals and it is retried; an imaginary part that
    is pure round-off is dropped.

    Args:
        mu1: Mean (D,) of the first set.
        sigma1: Covariance (D, D) of the first set.
        mu2: Mean (D,) of the second set.
        sigma2: Covariance (D, D) of the second set.
        eps: Diagonal offset used only when the product is singular.

    Returns:
        The distance (>= 0; tiny negative round-off is clipped to 0).

    Raises:
        ValueError: On mismatched shapes or a genuinely complex matrix square root.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    dim = mu1.shape[0]
    if mu1.shape != mu2.shape or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(
            f"shapes disagree: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {sigma1.shape}, "
            f"sigma2 {sigma2.shape}; both sets must use the same feature extractor."
        )
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        logger.warning("sqrtm(sigma1 @ sigma2) is singular; adding %g to the diagonals", eps)
        offset = np.eye(dim) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"matrix square root has imaginary part {np.abs(covmean.imag).max():.3g}; "
                "use more samples than feature dimensions, or a smaller feature_dim."
            )
        covmean = covmean.real
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    # The true value is >= 0; a small negative is round-off, a large one a real problem.
    if value < -1e-6 * max(1.0, float(np.trace(sigma1) + np.trace(sigma2))):
        logger.warning("Fréchet distance came out at %g: ill-conditioned covariances", value)
    return max(value, 0.0)


class FrechetDistance:
    """Streaming Fréchet distance between real and synthetic samples in a feature space.

    Holds only running sums (O(D^2) memory), never raw features, so it can accumulate
    any number of batches.

    Args:
        feature_extractor: Maps a batch of samples to features (B, D); called under
            ``torch.no_grad()``. Put modules in eval mode before passing them.
        reset_real_features: If False, :meth:`reset` keeps the real statistics, so a
            fixed real set is embedded once and reused across rounds.
    """

    def __init__(
        self,
        feature_extractor: Callable[[torch.Tensor], torch.Tensor],
        *,
        reset_real_features: bool = True,
    ) -> None:
        self.feature_extractor = feature_extractor
        self.reset_real_features = reset_real_features
        self.real_sums: FeatureSums | None = None
        self.fake_sums: FeatureSums | None = None

    def update(self, x: torch.Tensor, real: bool) -> None:
        """Embed a batch and add it to the real or the synthetic statistics."""
        with torch.no_grad():
            features = self.feature_extractor(x)
        if real:
            self.real_sums = update_feature_sums(self.real_sums, features)
        else:
            self.fake_sums = update_feature_sums(self.fake_sums, features)

    def compute(self) -> float:
        """Fréchet distance between everything seen so far.

        Raises:
            RuntimeError: If either side has fewer than two samples.
        """
        for name, sums in (("real", self.real_sums), ("synthetic", self.fake_sums)):
            count = 0 if sums is None else sums.count
            if count < 2:
                raise RuntimeError(
                    f"{name} side has {count} sample(s); call update(x, real={name == 'real'}) "
                    "with at least 2 samples before compute()."
                )
            if count <= sums.total.shape[0]:
                logger.warning(
                    "%s side has %d samples for %d feature dims: covariance is rank-deficient "
                    "and the distance is biased upwards", name, count, sums.total.shape[0],
                )  # fmt: skip
        mu1, sigma1 = statistics_from_sums(self.real_sums)
        mu2, sigma2 = statistics_from_sums(self.fake_sums)
        return frechet_distance(mu1, sigma1, mu2, sigma2)

    def reset(self) -> None:
        """Forget the synthetic statistics (and the real ones if ``reset_real_features``)."""
        self.fake_sums = None
        if self.reset_real_features:
            self.real_sums = None


class TorchScriptFeatureExtractor:
    """Features from a user-supplied TorchScript Inception-v3, loaded from disk only.

    Made for ``inception-2015-12-05.pt`` (the TensorFlow FID Inception translated to
    TorchScript by NVIDIA, used by StyleGAN2-ADA and clean-fid): it takes (B, 3, H, W)
    values in [0, 255], resizes to 299 itself and returns 2048-d pool features when called
    with ``return_features=True``. Grayscale inputs are repeated to three channels.

    Args:
        path: The ``.pt`` file.
        input_range: Value range of the inputs, mapped linearly to [0, 255].
        forward_kwargs: Keyword arguments for the module's forward
            (default ``{"return_features": True}``).
        device: Where to run the module.

    Raises:
        FileNotFoundError: If ``path`` does not exist (the message says what to supply).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        input_range: tuple[float, float] = (-1.0, 1.0),
        forward_kwargs: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"TorchScript feature extractor not found at {path}. This library never "
                f"downloads weights: obtain {INCEPTION_FILENAME} (TorchScript Inception-v3 "
                f"used by StyleGAN2-ADA/clean-fid, e.g. from {_INCEPTION_SOURCE}) on a "
                "machine with internet, copy it here and pass its path."
            )
        low, high = input_range
        if not high > low:
            raise ValueError(f"input_range={input_range} must be (low, high) with high > low.")
        self.path = path
        self.input_range = (float(low), float(high))
        self.forward_kwargs = dict(forward_kwargs or {"return_features": True})
        self.device = torch.device(device)
        self.module = torch.jit.load(str(path), map_location=self.device).eval()
        logger.info("loaded TorchScript feature extractor from %s", path)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, D) of images (B, 1 or 3, H, W) in ``input_range``."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images (B, 1 or 3, H, W), got shape {tuple(x.shape)}.")
        low, high = self.input_range
        x = x.to(self.device, torch.float32).expand(-1, 3, -1, -1)
        x = ((x - low) * (255.0 / (high - low))).clamp(0.0, 255.0)
        with torch.no_grad():
            features = self.module(x, **self.forward_kwargs)
        return features.reshape(features.shape[0], -1)


def inception_fid(real: torch.Tensor, synthetic: torch.Tensor, *, path: str | Path, batch: int = 64) -> float:
    """Conventional FID of images (N, 1 or 3, H, W) in [-1, 1] with a user-supplied Inception.

    ``path`` is a TorchScript Inception-v3 file on disk (see
    :class:`TorchScriptFeatureExtractor`); nothing is ever downloaded. Only meaningful for
    images; 1-D signals use the domain encoder's FD.

    Raises:
        FileNotFoundError: If ``path`` does not exist (the message says where to get it).
        ValueError: If the inputs are not image batches.
    """
    if real.ndim != 4 or synthetic.ndim != 4:
        raise ValueError("Inception FID needs image batches (N, C, H, W); score 1-D signals with the encoder FD")
    metric = FrechetDistance(TorchScriptFeatureExtractor(path))
    for batch_real in real.split(batch):
        metric.update(batch_real, real=True)
    for batch_fake in synthetic.split(batch):
        metric.update(batch_fake, real=False)
    return metric.compute()
