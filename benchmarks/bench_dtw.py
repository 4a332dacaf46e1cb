"""Throughput of medgan_core.metrics.dtw backends against dtaidistance's C implementation.

All columns compute the same full cross matrix between two sets of random-walk beats, with
the same float64 inputs and the same band (our radius r is dtaidistance's ``window=r+1``),
and must agree to 1e-6. dtaidistance is optional: without it only numpy is printed.

Columns: ``numpy`` = our wavefront (one thread); ``dtai 1T`` = dtaidistance C, one thread;
``dtai OMP`` = dtaidistance C with OpenMP on all cores (what ``backend="auto"`` runs).
dtaidistance's ``use_pruning=True`` is not timed: it returns ``inf`` whenever the optimal
path is the diagonal (see ``_dtw_kernels.dtaidistance_block``).

    python benchmarks/bench_dtw.py [--n 80] [--lengths 128 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from medgan_core.metrics.dtw import dtw_matrix, to_dtaidistance_window

try:
    from dtaidistance import dtw as dtai
    from dtaidistance import dtw_cc  # noqa: F401  (the C extension)
except ImportError:  # the benchmark still reports our own numbers
    dtai = None


def _best_seconds(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """Best wall time over ``repeats`` runs (the machine may be shared: best is least noisy)."""
    best, out = float("inf"), np.empty(0)
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _dtai_one_thread(a: np.ndarray, b: np.ndarray, window: int | None) -> np.ndarray:
    n, m = len(a), len(b)
    flat = dtai.distance_matrix_fast(
        np.vstack([a, b]), block=((0, n), (n, n + m)), compact=True, parallel=False,
        window=window, use_pruning=False,
    )
    return np.asarray(flat).reshape(n, m)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=80, help="beats per set (pairs = n * n)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--band", type=float, default=0.1, help="band as fraction of L")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    pairs = args.n * args.n
    print(f"pairs/s; {pairs} pairs per run; best of {args.repeats}; {os.cpu_count()} CPUs")
    header = f"{'L':>4} {'mode':>10} {'numpy':>8} {'dtai 1T':>8} {'dtai OMP':>9} {'max|diff|':>10}"
    print(header)
    print("-" * len(header))
    for length in args.lengths:
        # Random-walk beats: smoother than white noise, so warping paths are non-trivial.
        a = np.cumsum(rng.standard_normal((args.n, length)), axis=1) / np.sqrt(length)
        b = np.cumsum(rng.standard_normal((args.n, length)), axis=1) / np.sqrt(length)
        for window in (None, args.band):
            mode = "exact" if window is None else f"r={int(window * length)}"
            t_np, ours = _best_seconds(
                lambda: dtw_matrix(a, b, window=window, backend="numpy"), args.repeats
            )
            row = f"{length:>4} {mode:>10} {pairs / t_np:>8.0f}"
            if dtai is None:
                print(row + f" {'n/a':>8} {'n/a':>9} {'n/a':>10}")
                continue
            dw = to_dtaidistance_window(window, length, length)
            t_1, ref_1 = _best_seconds(lambda: _dtai_one_thread(a, b, dw), args.repeats)
            t_omp, ref_omp = _best_seconds(
                lambda: dtw_matrix(a, b, window=window, backend="dtaidistance"), args.repeats
            )
            diff = max(np.abs(ours - ref_1).max(), np.abs(ours - ref_omp).max())
            if diff > 1e-6:
                raise SystemExit(f"backends disagree: max |diff| = {diff:.3g} > 1e-6")
            print(row + f" {pairs / t_1:>8.0f} {pairs / t_omp:>9.0f} {diff:>10.1e}")


if __name__ == "__main__":
    main()
