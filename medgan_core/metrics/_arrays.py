"""Input checks shared by the metric modules: one place that names the bad value and the fix."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_float64"]


def as_float64(name: str, x: np.ndarray | torch.Tensor, *, ndim: int) -> np.ndarray:
    """Return ``x`` as a finite, non-empty float64 numpy array of rank ``ndim``.

    Metrics run in float64 because they sum many small terms (DTW path costs, kernel
    means, outer products) where float32 round-off would show up in the result.

    Args:
        name: Argument name used in error messages.
        x: Array or tensor (any device; it is copied to the CPU).
        ndim: Required number of dimensions.

    Returns:
        A C-contiguous float64 array (a copy when a conversion was needed).

    Raises:
        ValueError: If the rank is wrong, an axis is empty or a value is NaN/inf.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().to(device="cpu", dtype=torch.float64).numpy()
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimension(s), got shape {arr.shape}; "
            f"reshape it (for example flatten samples to (N, features))."
        )
    if 0 in arr.shape:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one sample.")
    if not np.isfinite(arr).all():
        raise ValueError(
            f"{name} contains {int((~np.isfinite(arr)).sum())} NaN/inf value(s); "
            "remove or repair those samples before computing metrics."
        )
    return arr
