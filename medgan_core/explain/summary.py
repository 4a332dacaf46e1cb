"""Where attribution mass lies: per-sample shares, their class means and named regions."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["REST", "attribution_share_map", "region_shares"]

#: The region name of whatever mass no named region covers.
REST = "rest"


def attribution_share_map(attributions: np.ndarray) -> np.ndarray:
    """The mean over samples of each sample's share of its own absolute attribution mass.

    Normalising each sample first makes methods and models comparable (their scales differ
    by orders of magnitude) and keeps one sample with a large score from dominating.

    Args:
        attributions: ``(N, C, ...)``.

    Returns:
        ``(C, ...)`` non-negative, summing to 1 (all zeros if every attribution is 0).
    """
    magnitude = np.abs(np.asarray(attributions, dtype=np.float64))
    totals = magnitude.reshape(len(magnitude), -1).sum(1)
    totals = np.where(totals > 0, totals, 1.0).reshape((-1,) + (1,) * (magnitude.ndim - 1))
    return (magnitude / totals).mean(0)


def region_shares(share_map: np.ndarray, regions: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The share of ``share_map``'s mass inside each named region, then :data:`REST`.

    Args:
        share_map: ``(C, ...)`` non-negative mass (:func:`attribution_share_map`).
        regions: name -> boolean mask of ``share_map``'s shape; regions must not overlap.

    Raises:
        ValueError: a mask of another shape, or overlapping regions.
    """
    total = float(share_map.sum())
    covered = np.zeros(share_map.shape, dtype=bool)
    shares: dict[str, float] = {}
    for name, mask in regions.items():
        if mask.shape != share_map.shape:
            raise ValueError(f"region {name!r}: mask shape {mask.shape} differs from the attributions' "
                             f"{share_map.shape}")
        if (covered & mask).any():
            raise ValueError(f"region {name!r} overlaps an earlier region; regions must be disjoint")
        covered |= mask
        shares[name] = float(share_map[mask].sum()) / total if total > 0 else 0.0
    shares[REST] = float(share_map[~covered].sum()) / total if total > 0 else 0.0
    return shares
