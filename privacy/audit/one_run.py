"""Empirical epsilon lower bound from a single training run.

Steinke, Nasr & Jagielski, "Privacy auditing with one (1) training run", NeurIPS 2023.
``m`` canaries are each included in training independently with probability 1/2. After
training, the auditor guesses IN for the ``k_+`` highest-scored canaries, OUT for the
``k_-`` lowest-scored ones and abstains on the rest. If training is (eps, delta)-DP, the
number ``W`` of correct guesses among the ``r = k_+ + k_-`` guesses satisfies (their main
theorem, Theorem 3.1, in the form evaluated by the p-value code published with the paper)::

    P[W >= v] <= P[Binom(r, q) >= v] + 2 m delta * max_{i=1..v} P[v - i <= Binom(r, q) < v] / i

with ``q = e^eps / (1 + e^eps)``, the accuracy of eps-DP randomized response. For
``delta = 0`` the delta term vanishes and the bound is the plain binomial tail. The
reported lower bound is the largest eps whose p-value is still below ``beta``: with
probability >= 1 - beta over the canary coin flips, the training is *not*
(eps', delta)-DP for any eps' < epsilon_lb. A bound above the accountant's epsilon
therefore means the accountant or the DP implementation is wrong.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy.special import bdtrc, expit, gammaln, xlog1py, xlogy
from scipy.stats import binomtest

__all__ = [
    "CONSISTENT",
    "VIOLATION",
    "LowerBoundResult",
    "compare_with_accountant",
    "default_guess_candidates",
    "epsilon_from_guesses",
    "epsilon_lower_bound",
    "p_value_dp_audit",
]

logger = logging.getLogger(__name__)

CONSISTENT = "consistent"
VIOLATION = (
    "VIOLATION: empirical lower bound exceeds accountant epsilon, "
    "indicates a bug in accounting or implementation"
)

# Bisection tolerance on epsilon; the returned value always sits on the "rejected" side.
_EPS_TOL = 1e-6
# expit(64) == 1.0 in float64, where every p-value is 1, so the bracket never passes it.
_EPS_CAP = 128.0
# k_+ and k_- fractions of m tried by the default search (each combination is one test).
_DEFAULT_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


@dataclass(frozen=True)
class LowerBoundResult:
    """The best (largest) certified lower bound and the guesses that produced it.

    ``num_candidates`` is the number of ``(k_+, k_-)`` choices that were tested; each was
    tested at level ``beta / num_candidates`` (union bound), so ``epsilon_lb`` holds with
    confidence ``1 - beta`` overall.
    """

    epsilon_lb: float
    num_guesses: int
    num_correct: int
    k_plus: int
    k_minus: int
    num_canaries: int
    delta: float
    beta: float
    num_candidates: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def p_value_dp_audit(
    *, num_canaries: int, num_guesses: int, num_correct: int, epsilon: float, delta: float
) -> float:
    """Upper bound on P[>= ``num_correct`` correct guesses] for an (epsilon, delta)-DP run.

    Args:
        num_canaries: ``m``, canaries each included with probability 1/2 (abstentions too).
        num_guesses: ``r``, guesses made (not abstained).
        num_correct: ``v``, correct guesses.
        epsilon: epsilon of the null hypothesis, >= 0.
        delta: delta of the null hypothesis, in [0, 1].

    Returns:
        The p-value, capped at 1.

    Raises:
        ValueError: unless ``0 <= v <= r <= m``, ``epsilon >= 0`` and ``0 <= delta <= 1``.
    """
    m, r, v = num_canaries, num_guesses, num_correct
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= num_correct <= num_guesses <= num_canaries, got {v}, {r}, {m}")
    if not epsilon >= 0.0 or not 0.0 <= delta <= 1.0:
        raise ValueError(f"need epsilon >= 0 and delta in [0, 1], got {epsilon}, {delta}")
    if v == 0:
        return 1.0
    q = float(expit(epsilon))  # accuracy of epsilon-DP randomized response
    # scipy.special's bdtrc is the same binomial tail as scipy.stats.binom.sf(v - 1, r, q)
    # without the ~100x per-call overhead; the (k+, k-) search evaluates it thousands of times.
    p = float(bdtrc(v - 1, r, q))  # P[Binom(r, q) >= v]
    if delta > 0.0:
        # P[v - i <= Binom < v] for i = 1..v; the theorem's max over i = 1..m stops at v
        # because beyond it the numerator is constant and the ratio only shrinks.
        below = np.cumsum(_binom_pmf(np.arange(v - 1, -1, -1), r, q))
        alpha = float(np.max(below / np.arange(1, v + 1)))
        p += 2.0 * m * delta * alpha
    return min(p, 1.0)


def _binom_pmf(k: np.ndarray, n: int, q: float) -> np.ndarray:
    # Log-space pmf; xlogy/xlog1py give 0 * log(0) = 0, so q = 0 or 1 is exact.
    log_pmf = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + xlogy(k, q) + xlog1py(n - k, -q)
    return np.exp(log_pmf)


def epsilon_from_guesses(
    *, num_canaries: int, num_guesses: int, num_correct: int, delta: float, beta: float = 0.05
) -> float:
    """Largest epsilon (to 1e-6, rounded down) whose audit p-value is below ``beta``.

    Args:
        num_canaries: ``m``.
        num_guesses: ``r``.
        num_correct: ``v``.
        delta: delta of the audited guarantee.
        beta: significance level, e.g. 0.05 for 95% confidence.

    Returns:
        The lower bound; 0.0 when even epsilon = 0 cannot be rejected.

    Raises:
        ValueError: on inconsistent counts or ``beta`` outside (0, 1).
    """
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1), got {beta}")

    def rejects(eps: float) -> bool:
        return _rejects(num_canaries, num_guesses, num_correct, delta, beta, eps)

    if not rejects(0.0):
        return 0.0
    # Invariant: rejects(lo) and not rejects(hi). The p-value grows with epsilon (a
    # larger epsilon allows more correct guesses), which is what makes bisection valid.
    lo, hi = 0.0, 1.0
    while rejects(hi):
        lo, hi = hi, 2.0 * hi
        if hi > _EPS_CAP:
            raise RuntimeError(f"epsilon bracket passed {_EPS_CAP}; p-value not increasing")
    while hi - lo > _EPS_TOL:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rejects(mid) else (lo, mid)
    return lo


def _rejects(m: int, r: int, v: int, delta: float, beta: float, eps: float) -> bool:
    p = p_value_dp_audit(num_canaries=m, num_guesses=r, num_correct=v, epsilon=eps, delta=delta)
    return p < beta


def default_guess_candidates(num_canaries: int) -> list[tuple[int, int]]:
    """The ``(k_+, k_-)`` grid searched when the caller fixes neither.

    Every combination of ``k`` in ``{0} + {round(f m) for f in 1%, 2%, 5%, 10%, 20%, 30%,
    50%}`` with ``1 <= k_+ + k_- <= m``: one-sided (only IN or only OUT guesses) and
    two-sided audits from very confident to half the canaries.

    Args:
        num_canaries: ``m`` >= 1.

    Returns:
        The candidate pairs, deduplicated and sorted.
    """
    ks = sorted({0} | {max(1, round(f * num_canaries)) for f in _DEFAULT_FRACTIONS})
    return [(kp, km) for kp in ks for km in ks if 1 <= kp + km <= num_canaries]


def epsilon_lower_bound(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    delta: float,
    beta: float = 0.05,
    k_plus: int | None = None,
    k_minus: int | None = None,
    candidates: Sequence[tuple[int, int]] | None = None,
) -> LowerBoundResult:
    """One-run epsilon lower bound from canary scores and their true inclusion bits.

    Guesses depend only on the score ranking (ties broken by canary index), never on the
    inclusion bits, as the theorem requires. How many to guess:

    * ``k_plus`` and/or ``k_minus`` given: that single choice (a missing one is 0), tested
      at level ``beta``. Use this when the choice was fixed before looking at results.
    * neither given: every pair in ``candidates`` (default
      :func:`default_guess_candidates`) is tested at level ``beta / len(candidates)`` and
      the largest bound is returned. The Bonferroni union bound keeps the overall
      confidence at ``1 - beta`` despite picking the best pair after seeing the labels;
      reporting the best pair *without* it would overstate the bound.

    Args:
        scores: ``(m,)`` canary scores, higher means "more likely included".
        included: ``(m,)`` booleans, whether each canary was in the training set; each
            must have been included independently with probability 1/2.
        delta: delta of the audited (epsilon, delta) guarantee (use the accountant's).
        beta: significance level; the bound holds with probability >= 1 - beta.
        k_plus: fixed number of IN guesses.
        k_minus: fixed number of OUT guesses.
        candidates: ``(k_plus, k_minus)`` pairs to search (only without fixed k's).

    Returns:
        The :class:`LowerBoundResult` with the largest bound.

    Raises:
        ValueError: on malformed inputs, ``beta``/``delta`` out of range, invalid ``k``
            values, or both fixed ``k`` and ``candidates`` given.
    """
    s = np.asarray(scores, dtype=np.float64)
    inc = np.asarray(included)
    if s.ndim != 1 or inc.shape != s.shape or len(s) == 0:
        raise ValueError(f"scores {s.shape} and included {inc.shape} must be non-empty 1-D of equal length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    if inc.dtype != np.bool_:
        if not np.isin(inc, (0, 1)).all():
            raise ValueError("included must be booleans or 0/1")
        inc = inc.astype(bool)
    if not 0.0 < beta < 1.0 or not 0.0 <= delta <= 1.0:
        raise ValueError(f"need beta in (0, 1) and delta in [0, 1], got beta={beta}, delta={delta}")
    m = len(s)
    fixed = k_plus is not None or k_minus is not None
    if fixed and candidates is not None:
        raise ValueError("pass either fixed k_plus/k_minus or candidates, not both")
    if candidates is not None and len(candidates) == 0:
        raise ValueError("candidates is empty; pass at least one (k_plus, k_minus) pair or None")
    if fixed:
        pairs = [(k_plus or 0, k_minus or 0)]
    else:
        pairs = list(candidates) if candidates is not None else default_guess_candidates(m)
    for kp, km in pairs:
        if kp < 0 or km < 0 or not 1 <= kp + km <= m:
            raise ValueError(f"invalid (k_plus, k_minus)=({kp}, {km}); need k >= 0 and 1 <= sum <= {m}")
    _warn_if_not_fair_coins(inc)

    order = np.argsort(-s, kind="stable")  # descending score, ties by index: label-blind
    inc_sorted = inc[order]
    in_top = np.r_[0, np.cumsum(inc_sorted)]  # in_top[k]: included among the k highest
    in_bottom = np.r_[0, np.cumsum(inc_sorted[::-1])]  # included among the k lowest
    level = beta / len(pairs)
    best: LowerBoundResult | None = None
    for kp, km in pairs:
        correct = int(in_top[kp] + (km - in_bottom[km]))
        if best is not None and not _rejects(m, kp + km, correct, delta, level, best.epsilon_lb):
            # The p-value grows with epsilon, so this pair cannot beat the current best.
            continue
        eps = epsilon_from_guesses(
            num_canaries=m, num_guesses=kp + km, num_correct=correct, delta=delta, beta=level
        )
        if best is None or eps > best.epsilon_lb:
            best = LowerBoundResult(eps, kp + km, correct, kp, km, m, delta, beta, len(pairs))
    assert best is not None  # pairs is non-empty, checked above
    logger.info(
        "one-run audit: epsilon_lb=%.4f (%d/%d correct, k+=%d, k-=%d, m=%d, delta=%g, beta=%g, %d tests)",
        best.epsilon_lb, best.num_correct, best.num_guesses, best.k_plus, best.k_minus,
        m, delta, beta, len(pairs),
    )
    return best


def compare_with_accountant(epsilon_lb: float, epsilon_accountant: float) -> str:
    """Check the empirical lower bound against the accountant's (upper-bound) epsilon.

    Both must refer to the same delta. The lower bound is conservative by construction,
    so no tolerance is applied: any excess is reported.

    Args:
        epsilon_lb: :attr:`LowerBoundResult.epsilon_lb`.
        epsilon_accountant: epsilon reported by the privacy accountant.

    Returns:
        :data:`CONSISTENT`, or :data:`VIOLATION` (also logged at ERROR level).

    Raises:
        ValueError: if either value is NaN or ``epsilon_lb`` is negative.
    """
    if math.isnan(epsilon_lb) or math.isnan(epsilon_accountant) or epsilon_lb < 0:
        raise ValueError(
            f"need epsilon_lb >= 0 and a non-NaN accountant epsilon, got {epsilon_lb}, {epsilon_accountant}"
        )
    if epsilon_lb > epsilon_accountant:
        logger.error(
            "%s (epsilon_lb=%.6g > epsilon_accountant=%.6g)", VIOLATION, epsilon_lb, epsilon_accountant
        )
        return VIOLATION
    return CONSISTENT


def _warn_if_not_fair_coins(included: np.ndarray) -> None:
    # The null distribution assumes independent fair-coin inclusion; a skewed split (e.g.
    # canaries assigned by a fixed 80/20 rule) silently invalidates the bound.
    n_in = int(included.sum())
    if binomtest(n_in, len(included), 0.5).pvalue < 1e-3:
        logger.warning(
            "%d of %d canaries included; the one-run bound assumes each is included "
            "independently with probability 1/2, so it may be invalid", n_in, len(included),
        )
