"""Membership-inference metrics: ROC AUC with uncertainty, ROC points, TPR at low FPR.

ROC points and the AUC come from scikit-learn, the bootstrap from ``scipy.stats``. Labels
are booleans, ``True`` for training members; scores follow the attack convention, higher
means "more likely a member". TPR at a low FPR is the headline number (Carlini et al.,
"Membership inference attacks from first principles", 2022): an attack that confidently
identifies a few members is a real privacy failure even when its AUC is close to 0.5.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import bootstrap, mannwhitneyu
from sklearn import metrics as skm

from privacy.audit.plotting import plot_roc

__all__ = [
    "AuditResult",
    "bootstrap_auc_ci",
    "delong_auc_se",
    "evaluate_attack_scores",
    "hanley_mcneil_auc_se",
    "plot_roc",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
]

logger = logging.getLogger(__name__)


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be 1-D of equal length")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be booleans or 0/1 (1 = member)")
        y = y.astype(bool)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    if y.all() or not y.any():
        raise ValueError(
            f"need both members and non-members, got {int(y.sum())} members and "
            f"{int((~y).sum())} non-members"
        )
    return s, y


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC (scikit-learn): P(member scores above a non-member), ties counting one half.

    Args:
        scores: ``(N,)`` attack scores.
        labels: ``(N,)`` membership, ``True`` for members.

    Returns:
        P(score of a random member > score of a random non-member) + 0.5 P(tie).

    Raises:
        ValueError: on malformed input or when one class is empty.
    """
    s, y = _check(scores, labels)
    return float(skm.roc_auc_score(y, s))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points for the rule "member iff score >= threshold", one per distinct score.

    Args:
        scores: ``(N,)`` attack scores.
        labels: ``(N,)`` membership, ``True`` for members.

    Returns:
        ``(fpr, tpr, thresholds)``, each of length (distinct scores + 1), starting at
        ``(0, 0, +inf)`` and ending at ``(1, 1, min score)``.

    Raises:
        ValueError: on malformed input or when one class is empty.
    """
    s, y = _check(scores, labels)
    # Keep every distinct score: the audit report stores the whole curve, and
    # tpr_at_fpr must see the point just before each extra false positive.
    return skm.roc_curve(y, s, drop_intermediate=False)


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> tuple[float, bool]:
    """Largest TPR over thresholds whose FPR is <= ``target_fpr`` (no interpolation).

    With ``n0`` non-members the smallest non-zero FPR is ``1 / n0``; if that exceeds the
    target (e.g. 0.1% with fewer than 1000 non-members) the number would describe FPR 0,
    not the target, so it is reported as NaN with ``reachable=False``.

    Args:
        scores: ``(N,)`` attack scores.
        labels: ``(N,)`` membership, ``True`` for members.
        target_fpr: in ``(0, 1]``.

    Returns:
        ``(tpr, reachable)``; ``tpr`` is NaN when not reachable.

    Raises:
        ValueError: on malformed input or a target outside ``(0, 1]``.
    """
    if not 0.0 < target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in (0, 1], got {target_fpr}")
    s, y = _check(scores, labels)
    n0 = int((~y).sum())
    # Integer false-positive budget; the epsilon guards 0.001 * 1000 landing on 0.999...
    max_false_positives = math.floor(target_fpr * n0 + 1e-9)
    if max_false_positives < 1:
        logger.warning(
            "TPR at FPR %.4g is unreachable with %d non-members (need >= %d); reporting NaN",
            target_fpr, n0, math.ceil(1.0 / target_fpr - 1e-9),
        )
        return float("nan"), False
    fpr, tpr, _ = roc_curve(s, y)
    allowed = np.rint(fpr * n0) <= max_false_positives
    return float(tpr[allowed].max()), True


def _placements(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # DeLong's structural components: for each member, the fraction of non-members it
    # beats (ties 1/2), and for each non-member, the fraction of members that beat it.
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    lo, hi = np.searchsorted(neg, pos, "left"), np.searchsorted(neg, pos, "right")
    v10 = (lo + 0.5 * (hi - lo)) / len(neg)
    lo, hi = np.searchsorted(pos, neg, "left"), np.searchsorted(pos, neg, "right")
    v01 = (len(pos) - hi + 0.5 * (hi - lo)) / len(pos)
    return v10, v01


def delong_auc_se(scores: np.ndarray, labels: np.ndarray) -> float:
    """DeLong et al. (1988) standard error of the empirical AUC.

    Args:
        scores: ``(N,)`` attack scores.
        labels: ``(N,)`` membership, ``True`` for members.

    Returns:
        The standard error; NaN with fewer than two records in a class.

    Raises:
        ValueError: on malformed input or when one class is empty.
    """
    s, y = _check(scores, labels)
    v10, v01 = _placements(s, y)
    if len(v10) < 2 or len(v01) < 2:
        return float("nan")
    return float(math.sqrt(v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01)))


def hanley_mcneil_auc_se(auc: float, num_members: int, num_non_members: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC (exponential-score approximation).

    Args:
        auc: the AUC estimate.
        num_members: number of members ``n1``.
        num_non_members: number of non-members ``n0``.

    Returns:
        The approximate standard error.

    Raises:
        ValueError: if ``auc`` is outside ``[0, 1]`` or a count is not positive.
    """
    if not 0.0 <= auc <= 1.0 or num_members < 1 or num_non_members < 1:
        raise ValueError(
            f"need auc in [0, 1] and positive counts, got {auc}, {num_members}, {num_non_members}"
        )
    q1, q2 = auc / (2.0 - auc), 2.0 * auc**2 / (1.0 + auc)
    var = (
        auc * (1.0 - auc)
        + (num_members - 1) * (q1 - auc**2)
        + (num_non_members - 1) * (q2 - auc**2)
    ) / (num_members * num_non_members)
    return float(math.sqrt(max(var, 0.0)))


def bootstrap_auc_ci(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval for the AUC.

    Members and non-members are resampled separately (stratified), so every resample has
    both classes and the class sizes of the real audit.

    Args:
        scores: ``(N,)`` attack scores.
        labels: ``(N,)`` membership, ``True`` for members.
        n_resamples: number of bootstrap resamples, at least 2.
        confidence: two-sided coverage, e.g. 0.95 for the 2.5/97.5 percentiles.
        seed: seed of the resampling generator, for reproducible reports.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: on malformed input or parameters.
    """
    if n_resamples < 2 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need n_resamples >= 2 and confidence in (0, 1), got {n_resamples}, {confidence}")
    s, y = _check(scores, labels)
    # scipy resamples each sample separately (stratified) but needs two records in each; a
    # lone record resamples to itself, and two copies of it give the same AUC every time.
    members, non_members = (np.repeat(x, 2) if len(x) == 1 else x for x in (s[y], s[~y]))
    result = bootstrap(
        (members, non_members), _mann_whitney_auc, n_resamples=n_resamples, batch=100,
        vectorized=True, confidence_level=confidence, method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _mann_whitney_auc(members: np.ndarray, non_members: np.ndarray, axis: int = -1) -> np.ndarray:
    # U / (n1 n0) is the AUC, ties counting one half; unlike roc_auc_score it is
    # vectorised over a batch of resamples.
    u = mannwhitneyu(members, non_members, axis=axis, method="asymptotic").statistic
    return u / (members.shape[axis] * non_members.shape[axis])


@dataclass(frozen=True)
class AuditResult:
    """Summary of one attack on one candidate set.

    ``tpr_at_01pct_fpr`` (and ``tpr_at_1pct_fpr``) is NaN when the number of non-members
    makes that FPR unreachable; the ``*_reachable`` properties say so explicitly.
    ``auc_se`` is DeLong's analytic standard error (NaN when not computed).
    """

    attack: str
    auc: float
    auc_ci_low: float
    auc_ci_high: float
    tpr_at_1pct_fpr: float
    tpr_at_01pct_fpr: float
    num_members: int
    num_non_members: int
    auc_se: float = float("nan")

    @property
    def tpr_at_1pct_fpr_reachable(self) -> bool:
        return self.num_non_members * 0.01 >= 1.0 - 1e-9

    @property
    def tpr_at_01pct_fpr_reachable(self) -> bool:
        return self.num_non_members * 0.001 >= 1.0 - 1e-9

    def to_dict(self) -> dict[str, float | int | str | bool]:
        """All fields plus the reachability flags; NaN stays a float NaN."""
        out: dict[str, float | int | str | bool] = asdict(self)
        out["tpr_at_1pct_fpr_reachable"] = self.tpr_at_1pct_fpr_reachable
        out["tpr_at_01pct_fpr_reachable"] = self.tpr_at_01pct_fpr_reachable
        return out


def evaluate_attack_scores(
    attack: str,
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AuditResult:
    """Compute every :class:`AuditResult` metric for one attack's scores.

    Args:
        attack: attack name recorded in the result.
        scores: ``(N,)`` attack scores.
        labels: ``(N,)`` membership, ``True`` for members.
        n_resamples: bootstrap resamples for the AUC interval.
        confidence: coverage of the AUC interval.
        seed: bootstrap seed.

    Returns:
        The filled :class:`AuditResult`.

    Raises:
        ValueError: on malformed input or when one class is empty.
    """
    s, y = _check(scores, labels)
    auc = roc_auc(s, y)
    low, high = bootstrap_auc_ci(s, y, n_resamples=n_resamples, confidence=confidence, seed=seed)
    tpr1, _ = tpr_at_fpr(s, y, 0.01)
    tpr01, _ = tpr_at_fpr(s, y, 0.001)
    result = AuditResult(
        attack=attack,
        auc=auc,
        auc_ci_low=low,
        auc_ci_high=high,
        tpr_at_1pct_fpr=tpr1,
        tpr_at_01pct_fpr=tpr01,
        num_members=int(y.sum()),
        num_non_members=int((~y).sum()),
        auc_se=delong_auc_se(s, y),
    )
    logger.info("audit %s: AUC %.3f [%.3f, %.3f], TPR@1%%FPR %.3f", attack, auc, low, high, tpr1)
    return result
