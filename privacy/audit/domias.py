"""DOMIAS density-ratio attack (van Breugel et al., "Membership inference attacks against
synthetic data through overfitting detection", AISTATS 2023).

A generator that overfits puts more synthetic density on its training records than the
population does, so the ratio p_synthetic(x) / p_reference(x) is large for members. The
reference density corrects for records that are merely typical. Both densities are
Gaussian KDEs in a low-dimensional embedding, because KDEs are useless in the raw
hundreds-to-thousands of dimensions of a beat or an image.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
from scipy.stats import gaussian_kde
from sklearn.decomposition import PCA

from privacy.audit.base import MembershipAttack, as_flat_samples, record_shape

__all__ = ["DomiasAttack", "PcaEmbedding"]

logger = logging.getLogger(__name__)

Embedding = Callable[[np.ndarray], np.ndarray]


# Above this min(N, D) a full SVD costs tens of seconds to minutes (5000 X-rays of 64x64),
# so the top-k subspace is found with a randomized range finder instead.
_EXACT_SVD_MAX_RANK = 256


class PcaEmbedding:
    """Principal-component projection, scikit-learn's ``PCA`` fitted once.

    Small inputs use an exact SVD. Larger ones use the randomized range finder with power
    iterations (Halko, Martinsson & Tropp 2011), seeded so audits are reproducible. Only
    the spanned subspace matters downstream: a Gaussian KDE with Scott's rule is
    equivariant under invertible linear maps, so DOMIAS density ratios do not depend on
    the basis chosen inside the subspace.

    Args:
        data: records ``(N, ...)`` to fit on; flattened to ``(N, D)``.
        n_components: number of leading components ``k`` to keep.
        seed: seed of the randomized range finder (unused for small inputs).

    Raises:
        ValueError: if ``k`` is not in ``[1, min(N - 1, D)]``.
    """

    def __init__(self, data: np.ndarray, *, n_components: int, seed: int = 0) -> None:
        flat = as_flat_samples(data, name="PCA data")
        max_k = min(flat.shape[0] - 1, flat.shape[1])
        if not 1 <= n_components <= max_k:
            raise ValueError(
                f"n_components={n_components} but {flat.shape[0]} records of {flat.shape[1]} "
                f"values allow 1..{max_k}; lower n_components or pass more reference records"
            )
        self.record_shape = record_shape(data)
        solver = "full" if min(flat.shape) <= _EXACT_SVD_MAX_RANK else "randomized"
        self._pca = PCA(n_components=n_components, svd_solver=solver, random_state=seed).fit(flat)
        self.mean: np.ndarray = self._pca.mean_  # (D,)
        self.components: np.ndarray = self._pca.components_  # (k, D)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = as_flat_samples(x, name="records to embed", like=self.record_shape)
        return self._pca.transform(flat)  # (N, k)


class DomiasAttack(MembershipAttack):
    """Score = log p_synthetic(e(x)) - log p_reference(e(x)), i.e. the log density ratio.

    The log is a monotone transform of the DOMIAS ratio, so rankings and AUC are identical,
    while the subtraction of log densities avoids 0/0 and overflow far from the data.

    Args:
        synthetic: samples from the audited generator, ``(M, ...)``.
        reference: real records from the same population, disjoint from the training set.
        embed: maps ``(N, ...)`` records (in their original shape) to ``(N, k)`` features;
            default: PCA fitted on ``reference`` (fitting on reference only keeps the
            embedding independent of the training members).
        n_components: ``k`` for the default PCA embedding.
        bw_method: KDE bandwidth rule passed to ``scipy.stats.gaussian_kde`` (Scott's
            rule when ``None``, as in the DOMIAS reference code).

    Raises:
        ValueError: if the embedding is degenerate (e.g. a mode-collapsed generator gives
            a singular covariance) or has too few samples for a ``k``-dim KDE.
    """

    inputs = ("synthetic", "reference")

    def __init__(
        self,
        *,
        synthetic: np.ndarray,
        reference: np.ndarray,
        embed: Embedding | None = None,
        n_components: int = 5,
        bw_method: str | float | None = None,
    ) -> None:
        if embed is None:
            embed = PcaEmbedding(reference, n_components=n_components)
        self._embed: Embedding = embed
        self._kde_synthetic = _fit_kde(self._embed_checked(synthetic, "synthetic"), bw_method, "synthetic")
        self._kde_reference = _fit_kde(self._embed_checked(reference, "reference"), bw_method, "reference")

    def score(self, candidates: np.ndarray) -> np.ndarray:
        z = self._embed_checked(candidates, "candidates").T  # (k, N)
        return self._kde_synthetic.logpdf(z) - self._kde_reference.logpdf(z)

    def _embed_checked(self, x: np.ndarray, name: str) -> np.ndarray:
        z = np.asarray(self._embed(np.asarray(x)), dtype=np.float64)
        if z.ndim == 1:
            z = z[:, None]
        if z.ndim != 2 or z.shape[0] != len(x):
            raise ValueError(f"embed returned shape {z.shape} for {len(x)} {name} records; expected (N, k)")
        if not np.all(np.isfinite(z)):
            raise ValueError(f"embed returned NaN or infinite features for {name}")
        return z


def _fit_kde(z: np.ndarray, bw_method: str | float | None, name: str) -> gaussian_kde:
    n, k = z.shape
    if n <= k:
        raise ValueError(f"{name}: {n} samples cannot fit a {k}-dim KDE; pass more samples or lower k")
    try:
        return gaussian_kde(z.T, bw_method=bw_method)
    except np.linalg.LinAlgError as err:
        raise ValueError(
            f"{name} embedding is degenerate (singular covariance in {k} dims), e.g. a "
            "mode-collapsed generator; lower n_components or inspect the samples"
        ) from err
