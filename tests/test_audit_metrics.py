"""Audit metrics against brute force and hand counts."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from privacy.audit import (
    AuditResult,
    bootstrap_auc_ci,
    delong_auc_se,
    evaluate_attack_scores,
    hanley_mcneil_auc_se,
    plot_roc,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)


def _pairwise(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    # psi(member i, non-member j) = 1 if member scores higher, 1/2 on a tie, else 0.
    diff = scores[labels][:, None] - scores[~labels][None, :]
    return (diff > 0) + 0.5 * (diff == 0)


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_brute_force_pairs_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.4
    scores = rng.integers(0, 6, 300) + labels  # few distinct values: many ties

    assert roc_auc(scores, labels) == pytest.approx(_pairwise(scores, labels).mean(), abs=1e-12)


def test_roc_auc_extremes() -> None:
    labels = np.array([True, True, False, False])

    assert roc_auc(np.array([4.0, 3.0, 2.0, 1.0]), labels) == 1.0
    assert roc_auc(np.array([1.0, 2.0, 3.0, 4.0]), labels) == 0.0
    assert roc_auc(np.ones(4), labels) == 0.5


def test_roc_auc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both members and non-members"):
        roc_auc(np.arange(3.0), np.ones(3, bool))


def _brute_force_roc(scores: np.ndarray, labels: np.ndarray) -> list[tuple[float, float, float]]:
    # (fpr, tpr, threshold) of "member iff score >= t" for t = +inf and every distinct score.
    return [
        (float(np.mean(scores[~labels] >= t)), float(np.mean(scores[labels] >= t)), float(t))
        for t in [np.inf, *sorted(set(scores.tolist()), reverse=True)]
    ]


def _tied_scores(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(400) < 0.3
    labels[:2] = (True, False)  # both classes, whatever the seed
    scores = rng.integers(0, 3 + 10 * seed, 400) + 0.5 * labels  # many ties for small seeds
    return scores.astype(float), labels


@pytest.mark.parametrize("seed", range(5))
def test_roc_curve_matches_brute_force_thresholds(seed: int) -> None:
    scores, labels = _tied_scores(seed)

    fpr, tpr, thresholds = roc_curve(scores, labels)

    np.testing.assert_allclose(np.c_[fpr, tpr, thresholds], _brute_force_roc(scores, labels), rtol=0, atol=1e-12)


def test_roc_curve_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    labels = np.array([1, 0, 1, 0, 0])

    fpr, tpr, thresholds = roc_curve(scores, labels)

    # Thresholds inf, 0.9, 0.8 (takes the tied member and non-member together), 0.3, 0.1.
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1, 1])
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.8, 0.3, 0.1])


def _low_fpr_case() -> tuple[np.ndarray, np.ndarray]:
    # 10 members, 100 non-members. Ranking from the top: 5 members, 1 non-member (95),
    # 3 members, 1 non-member (91), then 98 non-members in [0, 80] mixed with 2 members.
    members = np.array([100, 99, 98, 97, 96, 94, 93, 92, 50, 49], dtype=float)
    non_members = np.r_[95.0, 91.0, np.linspace(0, 80, 98)]
    scores = np.r_[members, non_members]
    labels = np.r_[np.ones(10, bool), np.zeros(100, bool)]
    return scores, labels


def test_tpr_at_fpr_hand_counts() -> None:
    scores, labels = _low_fpr_case()

    # 1% of 100 non-members allows one false positive: stop before score 91 -> 8/10.
    assert tpr_at_fpr(scores, labels, 0.01) == (0.8, True)
    # 2% allows two: the next member is at 50, below 78 non-members -> still 8/10.
    assert tpr_at_fpr(scores, labels, 0.02) == (0.8, True)
    # 100% allows everything.
    assert tpr_at_fpr(scores, labels, 1.0) == (1.0, True)


def test_tpr_at_fpr_tie_cannot_split_member_from_non_member() -> None:
    scores = np.r_[10.0, 5.0, 5.0, np.zeros(99)]
    labels = np.r_[True, True, np.zeros(100, bool)]  # the member at 5 ties one non-member

    # One false positive allowed: taking the tie costs exactly one, so TPR = 2/2.
    assert tpr_at_fpr(scores, labels, 0.01) == (1.0, True)
    # Tied with two non-members, the second member would cost two false positives.
    scores[3] = 5.0
    assert tpr_at_fpr(scores, labels, 0.01) == (0.5, True)


def _brute_force_tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    # The docstring's definition, one threshold at a time: NaN when even one false
    # positive exceeds the target, else the best TPR among thresholds within it.
    n0 = int((~labels).sum())
    if 1 / n0 > target_fpr + 1e-12:
        return math.nan
    return max(tpr for fpr, tpr, _ in _brute_force_roc(scores, labels) if fpr <= target_fpr + 1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target_fpr", [0.001, 0.0036, 0.01, 0.05, 0.29, 1.0])
def test_tpr_at_fpr_matches_brute_force(seed: int, target_fpr: float) -> None:
    scores, labels = _tied_scores(seed)
    expected = _brute_force_tpr_at_fpr(scores, labels, target_fpr)

    tpr, reachable = tpr_at_fpr(scores, labels, target_fpr)

    assert reachable is not math.isnan(expected)
    assert tpr == expected or (math.isnan(tpr) and math.isnan(expected))


def test_tpr_at_fpr_unreachable_is_nan_and_flagged(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    scores, labels = rng.random(1100), np.r_[np.ones(101, bool), np.zeros(999, bool)]

    with caplog.at_level(logging.WARNING):
        tpr, reachable = tpr_at_fpr(scores, labels, 0.001)

    assert math.isnan(tpr) and not reachable
    assert "unreachable" in caplog.text
    # Exactly 1000 non-members make 0.1% reachable (one false positive).
    assert tpr_at_fpr(rng.random(1100), np.r_[np.ones(100, bool), np.zeros(1000, bool)], 0.001)[1]


def test_delong_se_matches_its_definition_on_tied_scores() -> None:
    rng = np.random.default_rng(1)
    labels = rng.random(120) < 0.5
    scores = rng.integers(0, 4, 120) + 0.5 * labels
    psi = _pairwise(scores, labels)
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    expected = math.sqrt(v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01))

    assert delong_auc_se(scores, labels) == pytest.approx(expected, rel=1e-12)


def test_delong_se_agrees_with_bootstrap_spread() -> None:
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(400, bool), np.zeros(400, bool)]
    scores = rng.normal(size=800) + 0.8 * labels
    low, high = bootstrap_auc_ci(scores, labels, n_resamples=1000, seed=0)

    # For a near-normal AUC the 95% percentile interval spans about 2 * 1.96 SE.
    assert (high - low) / (2 * 1.96) == pytest.approx(delong_auc_se(scores, labels), rel=0.15)


def test_hanley_mcneil_by_hand() -> None:
    # AUC 0.8, 10 + 10: Q1 = 0.8/1.2, Q2 = 1.28/1.8,
    # var = (0.16 + 9 (Q1 - 0.64) + 9 (Q2 - 0.64)) / 100 = (0.16 + 0.24 + 0.64) / 100.
    assert hanley_mcneil_auc_se(0.8, 10, 10) == pytest.approx(math.sqrt(0.0104), rel=1e-9)


def test_bootstrap_ci_is_seeded_and_brackets_auc() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(300) < 0.5
    scores = rng.normal(size=300) + labels

    first = bootstrap_auc_ci(scores, labels, seed=7)
    again = bootstrap_auc_ci(scores, labels, seed=7)

    assert first == again
    assert first[0] < roc_auc(scores, labels) < first[1]
    assert bootstrap_auc_ci(np.r_[2.0, 3.0, 0.0, 1.0], np.r_[True, True, False, False]) == (1.0, 1.0)


def _brute_force_bootstrap_ci(scores: np.ndarray, labels: np.ndarray, n_resamples: int) -> tuple[float, float]:
    # The stratified percentile bootstrap written out: resample members and non-members
    # separately, score each resample by pairwise comparisons.
    rng = np.random.default_rng(123)
    pos, neg = scores[labels], scores[~labels]
    aucs = []
    for _ in range(n_resamples):
        p, n = rng.choice(pos, len(pos)), rng.choice(neg, len(neg))
        diff = p[:, None] - n[None, :]
        aucs.append(((diff > 0) + 0.5 * (diff == 0)).mean())
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(low), float(high)


def test_bootstrap_ci_matches_a_brute_force_bootstrap() -> None:
    # Different random streams, same distribution: the endpoints agree to Monte Carlo
    # error (about 0.002 for 2000 resamples here).
    rng = np.random.default_rng(6)
    labels = np.r_[np.ones(150, bool), np.zeros(250, bool)]
    scores = np.round(rng.normal(size=400) + 0.7 * labels, 1)  # rounded: ties too

    got = bootstrap_auc_ci(scores, labels, n_resamples=2000, seed=1)

    np.testing.assert_allclose(got, _brute_force_bootstrap_ci(scores, labels, 2000), atol=0.01)


def test_bootstrap_ci_with_a_single_member() -> None:
    # A lone member resamples to itself; only the non-members vary.
    scores = np.r_[0.5, np.linspace(0.0, 1.0, 101)]
    labels = np.r_[True, np.zeros(101, bool)]

    low, high = bootstrap_auc_ci(scores, labels, n_resamples=500)

    assert low < roc_auc(scores, labels) < high
    assert 0.3 < low and high < 0.7


def test_bootstrap_ci_rejects_too_few_resamples() -> None:
    with pytest.raises(ValueError, match="n_resamples >= 2"):
        bootstrap_auc_ci(np.r_[1.0, 0.0], np.r_[True, False], n_resamples=1)


def test_evaluate_attack_scores_fills_result_and_flags() -> None:
    rng = np.random.default_rng(4)
    labels = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    scores = rng.normal(size=1000) + 2.0 * labels

    result = evaluate_attack_scores("gan_leaks", scores, labels, n_resamples=200)
    as_dict = result.to_dict()

    assert isinstance(result, AuditResult)
    assert result.auc == pytest.approx(roc_auc(scores, labels))
    assert result.auc_ci_low <= result.auc <= result.auc_ci_high
    assert result.tpr_at_1pct_fpr == tpr_at_fpr(scores, labels, 0.01)[0]
    assert math.isnan(result.tpr_at_01pct_fpr) and not result.tpr_at_01pct_fpr_reachable
    assert as_dict["tpr_at_1pct_fpr_reachable"] is True
    assert as_dict["num_members"] == 500 and as_dict["attack"] == "gan_leaks"


def test_plot_roc_writes_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    labels = rng.random(200) < 0.5
    fpr, tpr, _ = roc_curve(rng.normal(size=200) + labels, labels)

    out = plot_roc({"gan_leaks": (fpr, tpr), "chance": (fpr, fpr)}, tmp_path / "fig" / "roc.png", "test")

    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="empty"):
        plot_roc({}, tmp_path / "x.png", "empty")
