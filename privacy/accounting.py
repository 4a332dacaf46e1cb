"""Epsilon from a DP-SGD history, and noise multipliers from (epsilon, delta) targets.

A history is Opacus's ``RDPAccountant.history``: a list of
``(noise_multiplier, sample_rate, num_steps)``. Composition across rounds is just the
concatenation of histories, which is what makes the on-disk ledger sufficient to
recompute a site's epsilon at any time.

Every input is validated before it reaches Opacus: its RDP analysis loops until a
series converges, and a NaN noise multiplier never converges (the call hangs), while a
negative step count silently yields a negative epsilon. Here both raise ``ValueError``.

RDP (:data:`ACCOUNTANT`) is the accountant of record: ledgers record and enforce with it.
GDP and PRV remain available for the calculator only, as optimistic approximations: GDP
under-reports epsilon in the regimes used here (2.245 against RDP's 2.873 at sigma 1,
q 0.015, 800 steps, delta 1e-5; see ``tests/test_privacy_accounting.py``).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Sequence

from opacus.accountants import create_accountant

__all__ = [
    "ACCOUNTANT",
    "HistoryEntry",
    "OPTIMISTIC_ACCOUNTANTS",
    "epsilon_from_history",
    "joint_noise_multiplier",
    "noise_multiplier_for_target",
    "per_mechanism_noise_multiplier",
    "validate_delta",
    "validate_history",
    "validate_history_entry",
]

HistoryEntry = tuple[float, float, int]

ACCOUNTANT = "rdp"
# Approximations the calculator may show, never a ledger: both can under-report epsilon.
OPTIMISTIC_ACCOUNTANTS = ("gdp", "prv")

# Opacus's RDP series needs sigma**2 to be a normal float and gets slower as sigma grows;
# outside this range no DP-SGD run is meaningful anyway (epsilon ~ 5e6 after ten steps
# at the bottom, no measurable gain from more noise at the top).
MIN_NOISE_MULTIPLIER = 1e-3
MAX_NOISE_MULTIPLIER = 1e4


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r} must be a real number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}={value} must be finite")
    return value


def validate_delta(delta: object) -> float:
    """``delta`` as a float, or ``ValueError`` unless it is finite and in (0, 1)."""
    value = _real("delta", delta)
    if not 0 < value < 1:
        raise ValueError(f"delta={value} must be in (0, 1)")
    return value


def validate_history_entry(noise_multiplier: object, sample_rate: object, steps: object) -> HistoryEntry:
    """One ``(noise_multiplier, sample_rate, steps)`` step group, checked and normalised.

    Raises:
        ValueError: unless the noise multiplier is finite and in
            [MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER], the sample rate finite and in
            (0, 1], and steps an integer >= 1.
    """
    sigma = _real("noise_multiplier", noise_multiplier)
    if not MIN_NOISE_MULTIPLIER <= sigma <= MAX_NOISE_MULTIPLIER:
        raise ValueError(f"noise_multiplier={sigma} must be in [{MIN_NOISE_MULTIPLIER:g}, "
                         f"{MAX_NOISE_MULTIPLIER:g}]")
    rate = _real("sample_rate", sample_rate)
    if not 0 < rate <= 1:
        raise ValueError(f"sample_rate={rate} must be in (0, 1]")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise ValueError(f"steps={steps!r} must be an integer")
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    return sigma, rate, int(steps)


def validate_history(history: Sequence[HistoryEntry]) -> list[HistoryEntry]:
    """Every entry of ``history`` checked by :func:`validate_history_entry`."""
    checked = []
    for index, entry in enumerate(history):
        try:
            sigma, rate, steps = entry
        except (TypeError, ValueError) as exc:
            raise ValueError(f"history[{index}]={entry!r} is not (noise_multiplier, sample_rate, steps)") from exc
        try:
            checked.append(validate_history_entry(sigma, rate, steps))
        except ValueError as exc:
            raise ValueError(f"history[{index}]: {exc}") from exc
    return checked


def _mechanism_count(mechanisms: object) -> int:
    if isinstance(mechanisms, bool) or not isinstance(mechanisms, numbers.Integral) or mechanisms < 1:
        raise ValueError(f"mechanisms={mechanisms!r} must be an integer >= 1")
    return int(mechanisms)


def joint_noise_multiplier(noise_multiplier: float, *, mechanisms: int) -> float:
    """The noise multiplier to account for ``mechanisms`` Gaussian mechanisms that each
    clip per record and add noise ``noise_multiplier`` times their clipping norm, all on the
    **same** Poisson-sampled batch: ``noise_multiplier / sqrt(mechanisms)``.

    Why one entry and not ``mechanisms`` entries of ``(sigma, q, steps)``: scale each
    mechanism's clipped per-record vector by ``1 / C_k`` and concatenate them. A record then
    contributes one vector of norm at most ``sqrt(k)``, the noise is ``sigma`` per
    coordinate, and the sampled records are the same for every part: this is exactly one
    sampled Gaussian mechanism with sensitivity ``sqrt(k)`` and noise ``sigma``, i.e. noise
    multiplier ``sigma / sqrt(k)`` at rate ``q``, which Opacus's RDP accountant covers.
    Recording ``k`` separate entries instead would treat the ``k`` mechanisms as sampled
    independently, which they are not (they share one secret sample), so that bound is
    not known to hold here. Both mechanisms must be evaluated on the same state (the
    weights that earlier, already released, steps produced), which the training step does.

    Raises:
        ValueError: a noise multiplier outside the accountant's range or ``mechanisms < 1``.
    """
    count = _mechanism_count(mechanisms)
    sigma = _real("noise_multiplier", noise_multiplier)
    if sigma < 0:
        raise ValueError(f"noise_multiplier={sigma} must be >= 0")
    return sigma / math.sqrt(count)


def per_mechanism_noise_multiplier(joint: float, *, mechanisms: int) -> float:
    """Inverse of :func:`joint_noise_multiplier`: each mechanism's noise multiplier, ``joint * sqrt(k)``.

    A site calibrates the *joint* multiplier to its budget, then adds this much noise in each
    mechanism, so the ledger's planned epsilon is the composed one.
    """
    count = _mechanism_count(mechanisms)
    sigma = _real("noise_multiplier", joint)
    if sigma < 0:
        raise ValueError(f"noise_multiplier={sigma} must be >= 0")
    return sigma * math.sqrt(count)


def _validate_accountant(accountant: str) -> str:
    if accountant != ACCOUNTANT and accountant not in OPTIMISTIC_ACCOUNTANTS:
        raise ValueError(f"unknown accountant {accountant!r}; known: {ACCOUNTANT}, "
                         + ", ".join(OPTIMISTIC_ACCOUNTANTS))
    return accountant


def epsilon_from_history(
    history: Sequence[HistoryEntry], *, delta: float, accountant: str = ACCOUNTANT
) -> float:
    """Epsilon spent by ``history`` at ``delta`` (0.0 for an empty history).

    Args:
        history: ``(noise_multiplier, sample_rate, steps)`` entries, in any order.
        delta: the delta of the guarantee, in (0, 1).
        accountant: ``"rdp"`` (the default, and the only one a ledger uses), or an
            optimistic approximation from :data:`OPTIMISTIC_ACCOUNTANTS`.

    Raises:
        ValueError: on a NaN, infinite, negative or otherwise invalid input, before any
            computation starts.
    """
    checked = validate_history(history)
    delta = validate_delta(delta)
    _validate_accountant(accountant)
    if not checked:
        return 0.0
    with warnings.catch_warnings():
        # The GDP warning is reported by the calculator in its own words.
        warnings.filterwarnings("ignore", message="GDP accounting is experimental")
        acc = create_accountant(accountant)
        acc.history = checked
        epsilon = float(acc.get_epsilon(delta=delta))
    # The RDP-to-DP conversion can go below zero for a large delta; an (epsilon, delta)
    # guarantee also holds for any larger epsilon, so 0 is still a valid (safe) answer.
    return max(epsilon, 0.0)


def noise_multiplier_for_target(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    history: Sequence[HistoryEntry] = (),
    accountant: str = ACCOUNTANT,
    tolerance: float = 1e-3,
) -> float:
    """Smallest noise multiplier such that ``history`` plus ``steps`` more steps stays
    within ``target_epsilon``.

    The result is found by bisection and always errs on the safe side: the returned
    multiplier gives an epsilon <= ``target_epsilon`` (never above it).

    Raises:
        ValueError: if the target is already spent by ``history`` or any input is invalid
            (NaN, infinite, non-positive), before the search starts.
    """
    target_epsilon = _real("target_epsilon", target_epsilon)
    if target_epsilon <= 0:
        raise ValueError(f"target_epsilon={target_epsilon} must be > 0")
    tolerance = _real("tolerance", tolerance)
    if not 0 < tolerance <= 1:
        raise ValueError(f"tolerance={tolerance} must be in (0, 1]")  # 0 would bisect forever
    validate_history_entry(1.0, sample_rate, steps)
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
        if high > MAX_NOISE_MULTIPLIER:
            raise ValueError(f"cannot reach target_epsilon={target_epsilon} with sigma <= {MAX_NOISE_MULTIPLIER:g}")
    while high - low > tolerance:
        mid = (low + high) / 2
        if mid < MIN_NOISE_MULTIPLIER or eps(mid) > target_epsilon:  # below the range: never returned
            low = mid
        else:
            high = mid
    assert eps(high) <= target_epsilon or math.isclose(eps(high), target_epsilon)
    return high
