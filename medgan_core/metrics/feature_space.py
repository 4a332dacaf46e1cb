"""All set metrics in an encoder's feature space at once: FD, PRDC and unbiased MMD^2."""

from __future__ import annotations

import torch

from medgan_core.metrics.distribution import mmd2, prdc
from medgan_core.metrics.frechet import feature_statistics, frechet_distance
from medgan_core.metrics.names import COVERAGE, DENSITY, FD, MMD2, PRECISION, RECALL

__all__ = ["feature_metrics"]


def feature_metrics(real: torch.Tensor, synthetic: torch.Tensor, *, bandwidth: float, nearest_k: int = 5
                    ) -> dict[str, float]:
    """FD, PRDC and unbiased MMD^2 between real and synthetic features (N, D).

    ``nearest_k`` is lowered to fit small sets (PRDC needs k < min(N, M)).
    """
    mu_r, sigma_r = feature_statistics(real)
    mu_s, sigma_s = feature_statistics(synthetic)
    k = max(1, min(nearest_k, len(real) - 1, len(synthetic) - 1))
    scores = prdc(real, synthetic, nearest_k=k)
    return {FD: frechet_distance(mu_r, sigma_r, mu_s, sigma_s), PRECISION: scores.precision,
            RECALL: scores.recall, DENSITY: scores.density, COVERAGE: scores.coverage,
            MMD2: mmd2(real, synthetic, bandwidth=bandwidth)}
