"""TSTR classifier scores against hand counts and a per-class brute force."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from medgan_core.metrics.tstr import evaluate_classifier


class FixedLogits(nn.Module):
    """A "classifier" that returns the given logits whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits  # (B, num_classes)


def _scores(logits: torch.Tensor, truth: torch.Tensor):
    return evaluate_classifier(FixedLogits(logits), torch.zeros(len(truth), 1, 8), truth)


def _brute_force(probs: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    # Balanced accuracy: mean recall over the classes present; macro F1: mean over all
    # classes, 0 where undefined; AUROC: last class vs rest by pairwise comparisons.
    pred = probs.argmax(1)
    recalls, f1s = [], []
    for c in range(probs.shape[1]):
        tp = np.sum((pred == c) & (truth == c))
        fp, fn = np.sum((pred == c) & (truth != c)), np.sum((pred != c) & (truth == c))
        if tp + fn:
            recalls.append(tp / (tp + fn))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    last = truth == probs.shape[1] - 1
    if last.all() or not last.any():
        return float(np.mean(recalls)), math.nan, float(np.mean(f1s))
    diff = probs[last, -1][:, None] - probs[~last, -1][None, :]
    return float(np.mean(recalls)), float(((diff > 0) + 0.5 * (diff == 0)).mean()), float(np.mean(f1s))


def test_scores_by_hand() -> None:
    # P(class 1) per record; argmax predicts 1 above 0.5.
    p1 = torch.tensor([0.1, 0.2, 0.6, 0.7, 0.8, 0.4], dtype=torch.float64)
    truth = torch.tensor([0, 0, 0, 0, 1, 1])
    logits = torch.log(torch.stack([1 - p1, p1], dim=1))

    scores = _scores(logits, truth)

    # Class 0: 2 of 4 recalled, 2 of 3 predicted 0 right -> F1 4/7.
    # Class 1: 1 of 2 recalled, 1 of 3 predicted 1 right -> F1 2/5.
    assert scores.balanced_accuracy == pytest.approx(0.5, abs=1e-12)
    assert scores.macro_f1 == pytest.approx((4 / 7 + 2 / 5) / 2, abs=1e-12)
    # V scores 0.8 and 0.4 against N scores 0.1, 0.2, 0.6, 0.7: 4 + 2 of 8 pairs.
    assert scores.auroc == pytest.approx(0.75, abs=1e-12)
    assert scores.sensitivity == pytest.approx(0.5, abs=1e-12)  # 0.8 called V, 0.4 called N
    assert scores.num_test == 6


def test_auroc_is_nan_without_the_last_class_and_f1_counts_it_as_zero() -> None:
    # Three classes, the test set holds only 0 and 1, and no record is predicted 2.
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 2.0, -1.0], [2.0, 0.0, -1.0], [0.0, 2.0, -1.0]])
    truth = torch.tensor([0, 1, 1, 1])

    scores = _scores(logits, truth)

    assert math.isnan(scores.auroc)
    assert scores.balanced_accuracy == pytest.approx((1 + 2 / 3) / 2, abs=1e-12)
    # Class 0: precision 1/2, recall 1 -> 2/3; class 1: 1 and 2/3 -> 4/5; class 2: 0.
    assert scores.macro_f1 == pytest.approx((2 / 3 + 4 / 5 + 0) / 3, abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_scores_match_per_class_brute_force(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    num_classes, n = 2 + seed % 3, 40 + 10 * seed
    logits = torch.randn(n, num_classes, generator=g, dtype=torch.float64)
    truth = torch.randint(0, num_classes, (n,), generator=g)
    if seed % 4 == 3:
        truth[truth == num_classes - 1] = 0  # last class absent: AUROC undefined

    with warnings.catch_warnings():
        # sklearn warns when a predicted class is absent from the truth; so be it here.
        warnings.simplefilter("ignore", UserWarning)
        scores = _scores(logits, truth)
    probs = torch.softmax(logits, dim=1).numpy()
    balanced, auroc, macro_f1 = _brute_force(probs, truth.numpy())

    assert scores.balanced_accuracy == pytest.approx(balanced, abs=1e-12)
    assert scores.macro_f1 == pytest.approx(macro_f1, abs=1e-12)
    assert scores.auroc == pytest.approx(auroc, abs=1e-12, nan_ok=True)
