"""Dynamic time warping (DTW) between 1-D sequences: exact and Sakoe-Chiba banded.

Convention (identical to ``dtaidistance.dtw.distance`` with default settings): the local
cost of matching ``x[i]`` with ``y[j]`` is ``(x[i] - y[j]) ** 2``; the cheapest monotone,
continuous path from ``(0, 0)`` to ``(n-1, m-1)`` (steps ``(1,0)``, ``(0,1)``, ``(1,1)``, no
step penalty) is found and the result is the square root of its summed cost. So for equal
lengths DTW <= Euclidean distance, and DTW(x, x) = 0.

Band (``window``): cell ``(i, j)`` is allowed when ``-(r + max(0, n-m)) <= j - i <=
r + max(0, m-n)``, i.e. the Sakoe-Chiba radius ``r`` widened by the length difference so
the end cell stays reachable. ``window`` is either

* ``None`` or ``math.inf``: exact DTW (no band);
* an ``int`` ``r >= 0``: radius in samples (``r = 0`` on equal lengths is Euclidean);
* a ``float`` in ``[0, 1]``: fraction of the longer sequence, ``r = floor(f * max(n, m))``
  (the UCR-suite convention).

``dtaidistance``'s ``window=w`` means radius ``w - 1``; :func:`to_dtaidistance_window`
converts. Speed: all pairs of a batch are advanced together along anti-diagonals
(a wavefront), so each numpy call updates thousands of DP cells; see
``benchmarks/bench_dtw.py`` for measured pairs/s against dtaidistance's C code.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from medgan_core.metrics._arrays import as_float64

__all__ = [
    "NearestNeighbourDTW",
    "dtw_distance",
    "dtw_matrix",
    "mean_nn_dtw",
    "band_radius",
    "to_dtaidistance_window",
]

logger = logging.getLogger(__name__)

Window = int | float | None
# About 2**18 DP cells per anti-diagonal buffer: large enough that numpy call overhead is
# amortised, small enough that the working set stays in cache (measured best on CPU).
_CELLS_PER_CHUNK = 2**18


@dataclass(frozen=True)
class NearestNeighbourDTW:
    """Mean nearest-neighbour DTW distances between a synthetic and a real set.

    Attributes:
        synthetic_to_real: Mean over synthetic beats of the DTW to the closest real beat
            (low = every synthetic beat looks like some real beat: fidelity).
        real_to_synthetic: Mean over real beats of the DTW to the closest synthetic beat
            (low = every real morphology is produced: coverage / no mode collapse).
    """

    synthetic_to_real: float
    real_to_synthetic: float

    @property
    def symmetric(self) -> float:
        """Average of both directions (a Chamfer-style set distance)."""
        return 0.5 * (self.synthetic_to_real + self.real_to_synthetic)


def band_radius(window: Window, n: int, m: int) -> int | None:
    """Resolve ``window`` to a Sakoe-Chiba radius in samples (``None`` = exact DTW).

    Args:
        window: ``None``/``inf``, an int radius, or a float fraction in ``[0, 1]``.
        n: Length of the first sequence.
        m: Length of the second sequence.

    Returns:
        The radius, or ``None`` when the band does not restrict any cell.

    Raises:
        ValueError: If ``window`` is negative, a bool, NaN, or a float above 1.
    """
    if window is None:
        return None
    if isinstance(window, bool) or not isinstance(window, numbers.Real):
        raise ValueError(f"window={window!r} must be None, an int radius or a float fraction.")
    if isinstance(window, numbers.Integral):
        radius = int(window)
    elif math.isinf(window) and window > 0:
        return None
    elif math.isnan(window) or not 0.0 <= window <= 1.0:
        raise ValueError(
            f"window={window!r}: a float is a fraction of the sequence length and must be "
            "in [0, 1]; pass an int for a radius in samples, or None for exact DTW."
        )
    else:
        radius = math.floor(float(window) * max(n, m))
    if radius < 0:
        raise ValueError(f"window={window!r} must be >= 0 (0 is the diagonal only).")
    return None if radius >= max(n, m) - 1 else radius


def to_dtaidistance_window(window: Window, n: int, m: int) -> int | None:
    """The ``window`` argument that makes ``dtaidistance`` use the same band as ours."""
    radius = band_radius(window, n, m)
    return None if radius is None else radius + 1


def _offsets(radius: int | None, n: int, m: int) -> tuple[int, int]:
    """Allowed range ``lo <= j - i <= hi`` of the band."""
    if radius is None:
        return -(n - 1), m - 1
    return -(radius + max(0, n - m)), radius + max(0, m - n)


def _wavefront(a_t: np.ndarray, b_rev_t: np.ndarray, lo_off: int, hi_off: int) -> np.ndarray:
    """DTW of ``P`` pairs at once; ``a_t`` is (n, P), ``b_rev_t`` is (m, P) reversed in time.

    Cells on anti-diagonal ``k = i + j`` depend only on diagonals ``k-1`` and ``k-2``, so a
    whole diagonal of every pair is one vectorised update. Buffers are indexed by ``i + 1``
    (row 0 is the virtual ``i = -1`` border) with pairs contiguous along the last axis.
    """
    n, pairs = a_t.shape
    m = b_rev_t.shape[0]
    prev2 = np.full((n + 2, pairs), np.inf)  # diagonal k-2
    prev1 = np.full((n + 2, pairs), np.inf)  # diagonal k-1
    cur = np.full((n + 2, pairs), np.inf)
    prev2[0] = 0.0  # D[-1, -1] = 0 starts every path at (0, 0)
    cost = np.empty((n, pairs))
    best = np.empty((n, pairs))
    for k in range(n + m - 1):
        lo = max(0, k - m + 1, -((hi_off - k) // 2))  # ceil((k - hi_off) / 2)
        hi = min(n - 1, k, (k - lo_off) // 2)
        if lo > hi:  # odd diagonals of a zero-width band (r = 0, n = m) hold no cell
            cur.fill(np.inf)
        else:
            width = hi - lo + 1
            c, t = cost[:width], best[:width]
            np.subtract(a_t[lo : hi + 1], b_rev_t[m - 1 - k + lo : m - k + hi], out=c)
            np.multiply(c, c, out=c)
            np.minimum(prev1[lo : hi + 1], prev1[lo + 1 : hi + 2], out=t)  # up, left
            np.minimum(t, prev2[lo : hi + 1], out=t)  # diagonal
            np.add(c, t, out=cur[lo + 1 : hi + 2])
            # The band edges move by at most one cell per diagonal, so the only stale
            # entries the next two diagonals can read are the two just outside this one.
            cur[lo] = np.inf
            cur[hi + 2] = np.inf
        prev2, prev1, cur = prev1, cur, prev2
    return np.sqrt(prev1[n])


def _pair_chunks(
    a: np.ndarray, b: np.ndarray, radius_window: Window
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(rows, cols, distances)`` for all pairs of ``a`` x ``b``, chunk by chunk."""
    (n_a, n), (n_b, m) = a.shape, b.shape
    lo_off, hi_off = _offsets(band_radius(radius_window, n, m), n, m)
    a_t = np.ascontiguousarray(a.T)  # (n, N)
    b_rev_t = np.ascontiguousarray(b[:, ::-1].T)  # (m, M)
    chunk = max(64, _CELLS_PER_CHUNK // max(n, m))
    total = n_a * n_b
    for start in range(0, total, chunk):
        idx = np.arange(start, min(start + chunk, total))
        rows, cols = idx // n_b, idx % n_b
        yield rows, cols, _wavefront(a_t[:, rows], b_rev_t[:, cols], lo_off, hi_off)


def dtw_distance(
    x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *, window: Window = None
) -> float:
    """DTW between two 1-D sequences (lengths may differ).

    Args:
        x: Sequence of length ``n``.
        y: Sequence of length ``m``.
        window: Band; see the module docstring.

    Returns:
        ``sqrt`` of the minimal summed squared difference along a warping path.

    Raises:
        ValueError: On empty, non-1-D or non-finite input, or an invalid ``window``.
    """
    xs = as_float64("x", x, ndim=1)
    ys = as_float64("y", y, ndim=1)
    return float(dtw_matrix(xs[None], ys[None], window=window)[0, 0])


def dtw_matrix(
    a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, *, window: Window = None
) -> np.ndarray:
    """All-pairs DTW between the rows of ``a`` (N, n) and ``b`` (M, m).

    Args:
        a: N sequences of length n.
        b: M sequences of length m (m may differ from n).
        window: Band; see the module docstring.

    Returns:
        float64 array (N, M) with ``out[i, j] = dtw_distance(a[i], b[j])``.

    Raises:
        ValueError: On empty, non-2-D or non-finite input, or an invalid ``window``.
    """
    a64 = as_float64("a", a, ndim=2)
    b64 = as_float64("b", b, ndim=2)
    out = np.empty((a64.shape[0], b64.shape[0]))
    for rows, cols, dist in _pair_chunks(a64, b64, window):
        out[rows, cols] = dist
    return out


def mean_nn_dtw(
    synthetic: np.ndarray | torch.Tensor,
    real: np.ndarray | torch.Tensor,
    *,
    window: Window,
) -> NearestNeighbourDTW:
    """Mean nearest-neighbour DTW in both directions between synthetic and real beats.

    ``window`` is required on purpose: exact and banded DTW give different numbers, and a
    reported value is only comparable with others computed under the same band.

    Args:
        synthetic: Synthetic beats (N, L).
        real: Real beats (M, L'), typically a held-out set.
        window: Band; see the module docstring.

    Returns:
        The two mean nearest-neighbour distances.

    Raises:
        ValueError: On empty, non-2-D or non-finite input, or an invalid ``window``.
    """
    syn = as_float64("synthetic", synthetic, ndim=2)
    ref = as_float64("real", real, ndim=2)
    # Reduce chunk by chunk so memory stays O(N + M) rather than O(N * M).
    syn_best = np.full(syn.shape[0], np.inf)
    real_best = np.full(ref.shape[0], np.inf)
    for rows, cols, dist in _pair_chunks(syn, ref, window):
        np.minimum.at(syn_best, rows, dist)
        np.minimum.at(real_best, cols, dist)
    logger.debug("mean_nn_dtw over %d x %d pairs", syn.shape[0], ref.shape[0])
    return NearestNeighbourDTW(
        synthetic_to_real=float(syn_best.mean()), real_to_synthetic=float(real_best.mean())
    )
