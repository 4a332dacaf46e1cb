"""Sample-space fidelity: PSNR, SSIM, and RMSE/MAE to the nearest real sample.

What these mean for a GAN, and what they do not. PSNR and SSIM compare two *paired*
signals; a GAN sample has no partner, so here a synthetic sample is paired with its
nearest real neighbour (L2 in pixel/sample space). A low nearest-neighbour RMSE/MAE or a
high PSNR/SSIM then says "this synthetic sample is close to some real sample". The
surest way to score perfectly is to copy the training data, so against the TRAINING set
a near-zero distance is a privacy red flag (memorisation), not a success. These numbers
are not a quality score on their own: report them next to PRDC/Fréchet distance in a
learned feature space, and compare the synthetic-to-train distance with the
held-out-real-to-train distance (a synthetic set closer to the training data than fresh
real data is suspicious).

SSIM follows Wang et al. (2004): Gaussian window of 11 taps with sigma 1.5,
``K1 = 0.01``, ``K2 = 0.03``, population (not sample) covariances, averaged over the
"valid" region where the window fits (equal to scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``).
Inputs (B, C, H, W) get 2-D SSIM. Inputs (B, C, L) get the same formula with a 1-D window:
a straightforward analogue usable for ECG beats, but not a validated perceptual measure
for signals; prefer DTW (:mod:`~medgan_core.metrics.dtw`) for ECG morphology.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medgan_core.metrics.names import EXACT_COPIES, MAE, PSNR, RMSE, SSIM

__all__ = ["NearestNeighbourFidelity", "nearest_neighbour_fidelity", "nearest_real_fidelity", "psnr", "ssim"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NearestNeighbourFidelity:
    """Mean and (population) std over synthetic samples of errors to their nearest real one."""

    rmse_mean: float
    rmse_std: float
    mae_mean: float
    mae_std: float


def _paired(
    x: torch.Tensor, y: torch.Tensor, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must be equal-shaped batches.")
    if not data_range > 0:
        raise ValueError(f"data_range={data_range} must be > 0 (max - min of the value scale).")
    return x.detach().to("cpu", torch.float64), y.detach().to("cpu", torch.float64)


def psnr(x: torch.Tensor, y: torch.Tensor, *, data_range: float) -> torch.Tensor:
    """Peak signal-to-noise ratio per sample, ``10 log10(data_range^2 / MSE)`` in dB.

    ``data_range`` is required: inferring it from the data (as some libraries do) makes
    values incomparable between batches. Identical samples give ``inf``.

    Returns:
        float64 tensor (B,).

    Raises:
        ValueError: On mismatched shapes or ``data_range <= 0``.
    """
    a, b = _paired(x, y, data_range)
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-(coords**2) / (2 * sigma**2))
    return window / window.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean structural similarity per sample (Wang et al. 2004), 2-D or 1-D.

    Args:
        x: (B, C, H, W) images or (B, C, L) signals.
        y: Same shape as ``x``.
        data_range: Dynamic range of the values (e.g. 2.0 for [-1, 1]).
        window_size: Gaussian window taps (odd).
        sigma: Gaussian window std.
        k1: Luminance constant, ``C1 = (k1 * data_range)^2``.
        k2: Contrast constant, ``C2 = (k2 * data_range)^2``.

    Returns:
        float64 tensor (B,), 1.0 for identical inputs.

    Raises:
        ValueError: On mismatched/unsupported shapes, inputs smaller than the window,
            an even ``window_size``, or ``data_range <= 0``.
    """
    a, b = _paired(x, y, data_range)
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size={window_size} must be a positive odd number (11).")
    if a.ndim not in (3, 4) or min(a.shape[2:]) < window_size:
        raise ValueError(
            f"ssim needs (B, C, L) or (B, C, H, W) with every spatial size >= {window_size}, "
            f"got {tuple(a.shape)}."
        )
    channels = a.shape[1]
    window = _gaussian_window(window_size, sigma)
    # The five local moments are filtered in one grouped convolution; "valid" padding, so
    # only positions where the whole window fits count (Wang et al.'s reference code).
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    groups = 5 * channels
    if a.ndim == 3:
        moments = F.conv1d(stack, window.expand(groups, 1, -1), groups=groups)
    else:
        moments = F.conv2d(stack, window.view(1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
        moments = F.conv2d(moments, window.view(1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    mu_x, mu_y, e_xx, e_yy, e_xy = moments.split(channels, dim=1)
    var_x, var_y, cov = e_xx - mu_x**2, e_yy - mu_y**2, e_xy - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.flatten(1).mean(dim=1)


def nearest_neighbour_fidelity(
    synthetic: torch.Tensor, real: torch.Tensor, *, block_size: int = 1024
) -> NearestNeighbourFidelity:
    """RMSE and MAE of each synthetic sample against its nearest real sample (L2).

    Read the module docstring before reporting these: low values against the training
    set can mean memorisation.

    Args:
        synthetic: Synthetic samples (N, ...) on the same scale as ``real``.
        real: Real samples (M, ...) with the same per-sample shape.
        block_size: Synthetic rows per distance block (memory is block_size * M).

    Returns:
        Mean and std over the N synthetic samples.

    Raises:
        ValueError: On empty or mismatched inputs.
    """
    empty = 0 in (synthetic.shape[0], real.shape[0])
    if synthetic.ndim < 2 or synthetic.shape[1:] != real.shape[1:] or empty:
        raise ValueError(
            f"synthetic {tuple(synthetic.shape)} and real {tuple(real.shape)} must be "
            "non-empty batches with the same per-sample shape."
        )
    syn = synthetic.detach().to("cpu", torch.float64).flatten(1)
    ref = real.detach().to("cpu", torch.float64).flatten(1)
    ref_sq = ref.pow(2).sum(dim=1)
    rmse, mae = [], []
    for block in syn.split(block_size):
        # ||s - r||^2 = ||s||^2 - 2 s.r + ||r||^2: one matmul per block finds the
        # neighbour; the reported errors are then computed exactly from differences.
        dist_sq = block.pow(2).sum(dim=1, keepdim=True) - 2.0 * block @ ref.T + ref_sq
        diff = block - ref[dist_sq.argmin(dim=1)]
        rmse.append(diff.pow(2).mean(dim=1).sqrt())
        mae.append(diff.abs().mean(dim=1))
    rmse_all, mae_all = torch.cat(rmse), torch.cat(mae)
    return NearestNeighbourFidelity(
        rmse_mean=float(rmse_all.mean()),
        rmse_std=float(rmse_all.std(correction=0)),
        mae_mean=float(mae_all.mean()),
        mae_std=float(mae_all.std(correction=0)),
    )


def nearest_real_fidelity(synthetic: torch.Tensor, real: torch.Tensor, *, data_range: float, scale: float = 1.0
                          ) -> dict[str, float]:
    """RMSE, MAE (physical units), PSNR (dB) and SSIM of each synthetic sample vs its nearest real one.

    What they mean: how close a synthetic sample is to SOME real sample (L2 nearest
    neighbour). What they do not: a GAN sample has no true partner, so these are not
    reconstruction quality, and copying the training data scores best. Against held-out
    patients they measure plausibility; against the training patients a value below the
    held-out-real-to-training value is a memorisation warning. ``exact_copies`` counts
    synthetic samples identical to a real one (infinite PSNR, excluded from its mean).

    Args:
        synthetic: (N, C, ...) samples in model units.
        real: (M, C, ...) samples, same per-sample shape.
        data_range: Span of model units (2.0 for [-1, 1]) for PSNR/SSIM.
        scale: Model units -> physical units for RMSE/MAE.
    """
    nn_scores = nearest_neighbour_fidelity(synthetic, real)
    syn = synthetic.detach().double().flatten(1)
    ref = real.detach().double().flatten(1)
    nearest = torch.cat([torch.cdist(block, ref).argmin(dim=1) for block in syn.split(1024)])
    paired = real[nearest]
    peak = psnr(synthetic, paired, data_range=data_range)
    finite = torch.isfinite(peak)
    return {RMSE: nn_scores.rmse_mean * scale, MAE: nn_scores.mae_mean * scale,
            PSNR: float(peak[finite].mean()) if finite.any() else float("inf"),
            SSIM: float(ssim(synthetic, paired, data_range=data_range).mean()),
            EXACT_COPIES: int((~finite).sum())}
