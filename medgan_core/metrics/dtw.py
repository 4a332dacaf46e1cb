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
converts.

Backends (``backend=``): ``"numpy"`` advances all pairs of a chunk together along
anti-diagonals (a wavefront), so each numpy call updates thousands of DP cells;
``"dtaidistance"`` calls that package's C/OpenMP code; ``"auto"`` (default) takes
dtaidistance when its C extension imports, else numpy. Results agree to round-off; the
measured throughput of both is printed by ``benchmarks/bench_dtw.py``.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import numpy as np
import torch

from medgan_core.metrics._arrays import as_float64
from medgan_core.metrics._dtw_kernels import (
    band_offsets,
    dtaidistance_block,
    load_dtaidistance,
    wavefront,
)
from medgan_core.metrics.names import DTW_REAL_TO_SYN, DTW_SYN_TO_REAL

__all__ = [
    "NearestNeighbourDTW",
    "dtw_distance",
    "dtw_metrics",
    "dtw_matrix",
    "mean_nn_dtw",
    "band_radius",
    "to_dtaidistance_window",
]

logger = logging.getLogger(__name__)

Window = int | float | None
Backend = Literal["auto", "numpy", "dtaidistance"]
_BACKENDS = ("auto", "numpy", "dtaidistance")
# Pairs per numpy chunk = this / length: large enough that numpy call overhead is
# amortised, small enough that the DP buffers stay in cache (measured best on CPU).
_CELLS_PER_CHUNK = 2**18
# Pairs per dtaidistance call: bounds the memory of each returned block.
_PAIRS_PER_C_CALL = 2**16


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


def _resolve_backend(backend: Backend) -> ModuleType | None:
    """The dtaidistance module to use, or ``None`` for the numpy wavefront."""
    if backend not in _BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; choose one of {_BACKENDS}.")
    if backend == "numpy":
        return None
    dtai = load_dtaidistance()
    if dtai is None and backend == "dtaidistance":
        raise ImportError(
            "backend='dtaidistance' needs dtaidistance with its C extension; "
            "`pip install dtaidistance` or use backend='auto' / 'numpy'."
        )
    return dtai


def _pair_chunks(
    a: np.ndarray, b: np.ndarray, window: Window, backend: Backend
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(rows, cols, distances)`` covering all pairs of ``a`` x ``b``, chunk by chunk."""
    (n_a, n), (n_b, m) = a.shape, b.shape
    radius = band_radius(window, n, m)
    dtai = _resolve_backend(backend)
    if dtai is not None:
        series = np.vstack([a, b]) if n == m else [*a, *b]
        dtai_window = None if radius is None else radius + 1  # dtaidistance counts from 1
        step = max(1, _PAIRS_PER_C_CALL // n_b)
        cols = np.tile(np.arange(n_b), step)
        for r0 in range(0, n_a, step):
            r1 = min(r0 + step, n_a)
            rows = np.repeat(np.arange(r0, r1), n_b)
            dist = dtaidistance_block(dtai, series, (r0, r1), (n_a, n_a + n_b), dtai_window)
            yield rows, cols[: rows.size], dist
        return
    lo_off, hi_off = band_offsets(radius, n, m)
    a_t = np.ascontiguousarray(a.T)  # (n, N)
    b_rev_t = np.ascontiguousarray(b[:, ::-1].T)  # (m, M)
    chunk = max(64, _CELLS_PER_CHUNK // max(n, m))
    total = n_a * n_b
    for start in range(0, total, chunk):
        idx = np.arange(start, min(start + chunk, total))
        rows, cols = idx // n_b, idx % n_b
        yield rows, cols, wavefront(a_t[:, rows], b_rev_t[:, cols], lo_off, hi_off)


def dtw_distance(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    window: Window = None,
    backend: Backend = "auto",
) -> float:
    """DTW between two 1-D sequences (lengths may differ).

    Args:
        x: Sequence of length ``n``.
        y: Sequence of length ``m``.
        window: Band; see the module docstring.
        backend: ``"auto"``, ``"numpy"`` or ``"dtaidistance"``; see the module docstring.

    Returns:
        ``sqrt`` of the minimal summed squared difference along a warping path.

    Raises:
        ValueError: On empty, non-1-D or non-finite input, an invalid ``window`` or
            an unknown ``backend``.
        ImportError: If ``backend="dtaidistance"`` and its C extension is missing.
    """
    xs = as_float64("x", x, ndim=1)
    ys = as_float64("y", y, ndim=1)
    return float(dtw_matrix(xs[None], ys[None], window=window, backend=backend)[0, 0])


def dtw_matrix(
    a: np.ndarray | torch.Tensor,
    b: np.ndarray | torch.Tensor,
    *,
    window: Window = None,
    backend: Backend = "auto",
) -> np.ndarray:
    """All-pairs DTW between the rows of ``a`` (N, n) and ``b`` (M, m).

    Args:
        a: N sequences of length n.
        b: M sequences of length m (m may differ from n).
        window: Band; see the module docstring.
        backend: ``"auto"``, ``"numpy"`` or ``"dtaidistance"``; see the module docstring.

    Returns:
        float64 array (N, M) with ``out[i, j] = dtw_distance(a[i], b[j])``.

    Raises:
        ValueError: On empty, non-2-D or non-finite input, an invalid ``window`` or
            an unknown ``backend``.
        ImportError: If ``backend="dtaidistance"`` and its C extension is missing.
    """
    a64 = as_float64("a", a, ndim=2)
    b64 = as_float64("b", b, ndim=2)
    out = np.empty((a64.shape[0], b64.shape[0]))
    for rows, cols, dist in _pair_chunks(a64, b64, window, backend):
        out[rows, cols] = dist
    return out


def mean_nn_dtw(
    synthetic: np.ndarray | torch.Tensor,
    real: np.ndarray | torch.Tensor,
    *,
    window: Window,
    backend: Backend = "auto",
) -> NearestNeighbourDTW:
    """Mean nearest-neighbour DTW in both directions between synthetic and real beats.

    ``window`` is required on purpose: exact and banded DTW give different numbers, and a
    reported value is only comparable with others computed under the same band.

    Args:
        synthetic: Synthetic beats (N, L).
        real: Real beats (M, L'), typically a held-out set.
        window: Band; see the module docstring.
        backend: ``"auto"``, ``"numpy"`` or ``"dtaidistance"``; see the module docstring.

    Returns:
        The two mean nearest-neighbour distances.

    Raises:
        ValueError: On empty, non-2-D or non-finite input, an invalid ``window`` or
            an unknown ``backend``.
        ImportError: If ``backend="dtaidistance"`` and its C extension is missing.
    """
    syn = as_float64("synthetic", synthetic, ndim=2)
    ref = as_float64("real", real, ndim=2)
    # Reduce chunk by chunk so memory stays O(N + M) rather than O(N * M).
    syn_best = np.full(syn.shape[0], np.inf)
    real_best = np.full(ref.shape[0], np.inf)
    for rows, cols, dist in _pair_chunks(syn, ref, window, backend):
        np.minimum.at(syn_best, rows, dist)
        np.minimum.at(real_best, cols, dist)
    logger.debug("mean_nn_dtw over %d x %d pairs", syn.shape[0], ref.shape[0])
    return NearestNeighbourDTW(
        synthetic_to_real=float(syn_best.mean()), real_to_synthetic=float(real_best.mean())
    )


def dtw_metrics(synthetic: torch.Tensor, real: torch.Tensor, *, radius: int, scale: float = 1.0
                ) -> dict[str, float]:
    """Mean nearest-neighbour DTW (banded) both ways between signal sets (N, C, L), in physical units.

    With C > 1 leads this is per-lead (independent) DTW: each lead's mean nearest-neighbour
    distances, averaged over the leads. With one lead it is that lead's.
    """
    if synthetic.ndim != 3 or real.ndim != 3 or synthetic.shape[1] != real.shape[1]:
        raise ValueError(f"need signal sets (N, C, L) with the same C, got {tuple(synthetic.shape)} and "
                         f"{tuple(real.shape)}")
    per_lead = [mean_nn_dtw(synthetic[:, c], real[:, c], window=int(radius)) for c in range(synthetic.shape[1])]
    return {DTW_SYN_TO_REAL: float(np.mean([r.synthetic_to_real for r in per_lead])) * scale,
            DTW_REAL_TO_SYN: float(np.mean([r.real_to_synthetic for r in per_lead])) * scale}
