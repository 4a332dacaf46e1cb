"""Batched DTW kernels behind :mod:`medgan_core.metrics.dtw`: numpy wavefront and dtaidistance C.

Both compute, for many pairs at once, the DTW of the module docstring of ``dtw.py`` under a
band given as offsets ``lo <= j - i <= hi`` and return bit-identical float64 results on the
benchmark inputs (``benchmarks/bench_dtw.py``).
"""

from __future__ import annotations

import logging
from types import ModuleType

import numpy as np

__all__ = ["band_offsets", "wavefront", "load_dtaidistance", "dtaidistance_block"]

logger = logging.getLogger(__name__)


def band_offsets(radius: int | None, n: int, m: int) -> tuple[int, int]:
    """Allowed range ``lo <= j - i <= hi``: radius ``r`` widened by the length difference."""
    if radius is None:
        return -(n - 1), m - 1
    return -(radius + max(0, n - m)), radius + max(0, m - n)


def wavefront(a_t: np.ndarray, b_rev_t: np.ndarray, lo_off: int, hi_off: int) -> np.ndarray:
    """DTW of ``P`` pairs at once; ``a_t`` is (n, P), ``b_rev_t`` is (m, P) reversed in time.

    Cells on anti-diagonal ``k = i + j`` depend only on diagonals ``k-1`` and ``k-2``, so a
    whole diagonal of every pair is one vectorised update. Buffers are indexed by ``i + 1``
    (row 0 is the virtual ``i = -1`` border) with pairs contiguous along the last axis, so
    every slice below is one contiguous block of memory.
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
            # b_rev_t[m-1-j] = b[j] with j = k - i: the diagonal is a contiguous slice.
            np.subtract(a_t[lo : hi + 1], b_rev_t[m - 1 - k + lo : m - k + hi], out=c)
            np.multiply(c, c, out=c)
            np.minimum(prev1[lo : hi + 1], prev1[lo + 1 : hi + 2], out=t)  # up, left
            np.minimum(t, prev2[lo : hi + 1], out=t)  # diagonal
            np.add(c, t, out=cur[lo + 1 : hi + 2])
            # Band edges move by at most one cell per diagonal, so the only stale entries
            # the next two diagonals can read are the two just outside this one.
            cur[lo] = np.inf
            cur[hi + 2] = np.inf
        prev2, prev1, cur = prev1, cur, prev2
    return np.sqrt(prev1[n])


def load_dtaidistance() -> ModuleType | None:
    """``dtaidistance.dtw`` when its compiled C extension imports, else ``None``.

    Without the C extension dtaidistance silently falls back to pure Python, which is far
    slower than our numpy wavefront, so that case counts as unavailable.
    """
    try:
        from dtaidistance import dtw, dtw_cc  # noqa: F401  (dtw_cc: the C extension)
    except ImportError:
        return None
    return dtw


def dtaidistance_block(
    dtai: ModuleType,
    series: np.ndarray | list[np.ndarray],
    rows: tuple[int, int],
    cols: tuple[int, int],
    window: int | None,
) -> np.ndarray:
    """DTW of ``series[rows[0]:rows[1]]`` x ``series[cols[0]:cols[1]]`` via dtaidistance's C code.

    ``use_pruning`` stays off: dtaidistance prunes cells above the Euclidean distance, and
    round-off then turns the result into ``inf`` whenever the best path is the diagonal
    (near-copies, ``window=1``), exactly the privacy-relevant case (seen with 2.5.1).
    """
    try:
        from dtaidistance import dtw_cc_omp  # noqa: F401
        parallel = True
    except ImportError:  # C without OpenMP: single thread rather than multiprocessing
        parallel = False
    flat = dtai.distance_matrix_fast(
        series,
        block=(rows, cols),
        compact=True,
        parallel=parallel,
        window=window,
        use_pruning=False,
    )
    return np.asarray(flat, dtype=np.float64)
