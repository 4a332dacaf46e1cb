"""GAN-Leaks black-box attacks (Chen et al., "GAN-Leaks: A taxonomy of membership
inference attacks against generative models", CCS 2020).

A generator that memorised a training record emits samples close to it, so the distance
from a candidate to its nearest synthetic sample is small for members. The calibrated
variant subtracts the same distance to a reference generator trained without the
candidates, which cancels how "typical" (easy to reconstruct) a record is anyway.
"""

from __future__ import annotations

import logging

import numpy as np

from privacy.audit.base import MembershipAttack, as_flat_samples, record_shape

__all__ = ["GanLeaksAttack", "GanLeaksCalibratedAttack", "min_l2_distances"]

logger = logging.getLogger(__name__)


def min_l2_distances(queries: np.ndarray, samples: np.ndarray, *, chunk_size: int = 1024) -> np.ndarray:
    """Euclidean distance from each query to its nearest sample, computed in blocks.

    Args:
        queries: ``(N, D)`` float64 matrix.
        samples: ``(M, D)`` float64 matrix.
        chunk_size: block edge; memory is ``chunk_size**2`` float64 values, so the default
            handles 5000 x 5000 (or far larger) sets in about 8 MB.

    Returns:
        ``(N,)`` float64 nearest-neighbour distances.

    Raises:
        ValueError: if ``chunk_size`` is not positive or the dimensions differ.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if queries.shape[1] != samples.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} features but samples have {samples.shape[1]}")
    sample_sq = np.einsum("ij,ij->i", samples, samples)  # (M,)
    best = np.empty(len(queries))
    for q_start in range(0, len(queries), chunk_size):
        q = queries[q_start : q_start + chunk_size]  # (n, D)
        q_sq = np.einsum("ij,ij->i", q, q)  # (n,)
        block_best = np.full(len(q), np.inf)
        for s_start in range(0, len(samples), chunk_size):
            s = samples[s_start : s_start + chunk_size]  # (m, D)
            # |q - s|^2 = |q|^2 + |s|^2 - 2 q.s; float64 keeps the cancellation error
            # ~1e-16 * |q|^2, far below the gaps between near-duplicates we must resolve.
            d2 = q_sq[:, None] + sample_sq[None, s_start : s_start + len(s)] - 2.0 * (q @ s.T)
            np.minimum(block_best, d2.min(axis=1), out=block_best)
        best[q_start : q_start + len(q)] = block_best
    return np.sqrt(np.maximum(best, 0.0))


class GanLeaksAttack(MembershipAttack):
    """Full black-box GAN-Leaks: score = -(min L2 distance to the synthetic samples).

    Args:
        synthetic: samples from the audited generator, ``(M, ...)``.
        chunk_size: block size for the distance computation.
    """

    def __init__(self, *, synthetic: np.ndarray, chunk_size: int = 1024) -> None:
        self._synthetic = as_flat_samples(synthetic, name="synthetic")
        self._shape = record_shape(synthetic)
        self._chunk_size = chunk_size

    def score(self, candidates: np.ndarray) -> np.ndarray:
        flat = as_flat_samples(candidates, name="candidates", like=self._shape)
        return -min_l2_distances(flat, self._synthetic, chunk_size=self._chunk_size)


class GanLeaksCalibratedAttack(MembershipAttack):
    """Calibrated GAN-Leaks: score = -(d_target - d_reference).

    Args:
        synthetic: samples from the audited generator, ``(M, ...)``.
        reference_synthetic: samples from a reference generator trained on data from the
            same population but *without* any candidate, ``(M', ...)``.
        chunk_size: block size for the distance computation.

    Raises:
        ValueError: if the two sample sets have different record sizes.
    """

    inputs = ("synthetic", "reference_synthetic")

    def __init__(
        self, *, synthetic: np.ndarray, reference_synthetic: np.ndarray, chunk_size: int = 1024
    ) -> None:
        self._synthetic = as_flat_samples(synthetic, name="synthetic")
        self._shape = record_shape(synthetic)
        self._reference = as_flat_samples(reference_synthetic, name="reference_synthetic", like=self._shape)
        self._chunk_size = chunk_size

    def score(self, candidates: np.ndarray) -> np.ndarray:
        flat = as_flat_samples(candidates, name="candidates", like=self._shape)
        d_target = min_l2_distances(flat, self._synthetic, chunk_size=self._chunk_size)
        d_reference = min_l2_distances(flat, self._reference, chunk_size=self._chunk_size)
        return -(d_target - d_reference)
