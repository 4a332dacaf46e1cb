"""Epsilon from a DP-SGD history, and noise multipliers from (epsilon, delta) targets.

A history is Opacus's ``RDPAccountant.history``: a list of
``(noise_multiplier, sample_rate, num_steps)``. Composition across rounds is just the
concatenation of histories, which is what makes the on-disk ledger sufficient to
recompute a site's epsilon at any time.
"""

from __future__ import annotations

import math
from typing import Sequence

from opacus.accountants import create_accountant

__all__ = [
    "HistoryEntry",
    "epsilon_from_history",
    "noise_multiplier_for_target",
]

HistoryEntry = tuple[float, float, int]


def epsilon_from_history(
    history: Sequence[HistoryEntry], *, delta: float, accountant: str = "rdp"
) -> float:
    """Epsilon spent by ``history`` at ``delta`` (0.0 for an empty history)."""
    if not history:
        return 0.0
    acc = create_accountant(accountant)
    acc.history = [(float(s), float(q), int(n)) for s, q, n in history]
    return float(acc.get_epsilon(delta=delta))


def noise_multiplier_for_target(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    history: Sequence[HistoryEntry] = (),
    accountant: str = "rdp",
    tolerance: float = 1e-3,
) -> float:
    """Smallest noise multiplier such that ``history`` plus ``steps`` more steps stays
    within ``target_epsilon``.

    The result is found by bisection and always errs on the safe side: the returned
    multiplier gives an epsilon <= ``target_epsilon`` (never above it).

    Raises:
        ValueError: if the target is already spent by ``history`` or the inputs are invalid.
    """
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate={sample_rate} must be in (0, 1]")
    if steps <= 0:
        raise ValueError(f"steps={steps} must be positive")
    spent = epsilon_from_history(history, delta=delta, accountant=accountant)
    if spent >= target_epsilon:
        raise ValueError(
            f"target_epsilon={target_epsilon} is already spent (epsilon={spent:.4f}); "
            "no amount of noise allows more steps"
        )

    def eps(sigma: float) -> float:
        return epsilon_from_history([*history, (sigma, sample_rate, steps)], delta=delta, accountant=accountant)

    low, high = 0.0, 1.0
    while eps(high) > target_epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise ValueError(f"cannot reach target_epsilon={target_epsilon} with sigma <= 1e4")
    while high - low > tolerance:
        mid = (low + high) / 2
        if eps(mid) > target_epsilon:
            low = mid
        else:
            high = mid
    assert eps(high) <= target_epsilon or math.isclose(eps(high), target_epsilon)
    return high
