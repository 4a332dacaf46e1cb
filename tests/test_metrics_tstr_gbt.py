"""The independent TSTR classifier (gradient-boosted trees on z-normalised samples) and the
sensitivity every classifier row reports, on cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import recall_score

from medgan_core.data.labelled import LabelledSet
from medgan_core.evaluation import gbt_scores
from medgan_core.metrics.tstr import scores_from_probabilities
from medgan_core.metrics.tstr_gbt import evaluate_gbt, gbt_features, train_gbt


def _beats(n: int, *, seed: int, bump: bool) -> torch.Tensor:
    """(n, 1, 128) noisy beats of random amplitude and offset; with ``bump``, a bump in samples 40-50."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 128, generator=g, dtype=torch.float64)
    if bump:
        x[:, :, 40:50] += 4.0
    scale = torch.rand(n, 1, 1, generator=g, dtype=torch.float64) * 3 + 0.5
    return x * scale + torch.randn(n, 1, 1, generator=g, dtype=torch.float64)


def _two_classes(n_per_class: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.cat([_beats(n_per_class, seed=seed, bump=False), _beats(n_per_class, seed=seed + 1, bump=True)])
    return x, torch.arange(2).repeat_interleave(n_per_class)


def test_features_are_z_normalised_per_sample_and_ignore_amplitude_and_offset() -> None:
    x = _beats(6, seed=0, bump=True)

    features = gbt_features(x)

    assert features.shape == (6, 128)
    np.testing.assert_allclose(features.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(features.std(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(gbt_features(3.0 * x - 2.0), features, atol=1e-12)
    assert not gbt_features(torch.full((2, 1, 128), 0.7)).any()  # a constant sample: zeros, not NaN


def test_large_images_are_averaged_down_to_32x32_small_ones_kept() -> None:
    image = torch.zeros(1, 1, 64, 64)
    image[:, :, :2, :2] = 1.0  # one 2x2 block -> one pixel of 1 in a 32x32 image

    features = gbt_features(image)

    expected = np.zeros(32 * 32)
    expected[0] = 1.0
    expected = (expected - expected.mean()) / expected.std()
    np.testing.assert_allclose(features[0], expected, atol=1e-12)
    assert gbt_features(torch.rand(3, 1, 16, 16)).shape == (3, 256)


def test_trees_separate_classes_that_differ_in_one_window() -> None:
    train_x, train_y = _two_classes(150, seed=0)
    test_x, test_y = _two_classes(100, seed=10)

    scores = evaluate_gbt(train_gbt(train_x, train_y, seed=0), test_x, test_y, num_classes=2)

    assert scores.auroc > 0.99
    assert scores.balanced_accuracy > 0.95 and scores.sensitivity > 0.95


def test_trees_on_shuffled_labels_rank_at_chance() -> None:
    # The same beats as above, labels shuffled: nothing ties a label to a beat, in training or test.
    x, y = _two_classes(300, seed=0)
    g = torch.Generator().manual_seed(0)
    y = y[torch.randperm(len(y), generator=g)]
    order = torch.randperm(len(y), generator=g)
    train, test = order[:300], order[300:]

    scores = evaluate_gbt(train_gbt(x[train], y[train], seed=0), x[test], y[test], num_classes=2)

    assert scores.auroc == pytest.approx(0.5, abs=0.1)
    assert scores.balanced_accuracy == pytest.approx(0.5, abs=0.1)


def test_trees_trained_without_the_last_class_never_predict_it() -> None:
    train_x, train_y = _two_classes(50, seed=0)
    test_x, test_y = _two_classes(20, seed=10)
    keep = train_y == 0

    scores = evaluate_gbt(train_gbt(train_x[keep], train_y[keep], seed=0), test_x, test_y, num_classes=2)

    assert scores.sensitivity == 0.0 and scores.balanced_accuracy == 0.5


def test_gbt_scores_are_seeded_and_seeds_differ() -> None:
    x, y = _two_classes(60, seed=0)
    x = x + 3.0 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    train, test = LabelledSet(x, y), LabelledSet(*_two_classes(60, seed=10))

    first = gbt_scores(train, test, num_classes=2, seeds=(0, 1, 2))

    assert gbt_scores(train, test, num_classes=2, seeds=(0, 1, 2)) == first
    assert first["seeds"] == 3 and first["num_test"] == 120
    assert first["balanced_accuracy_std"] > 0  # max_features < 1: the seed picks the features
    with pytest.raises(ValueError, match="at least one seed"):
        gbt_scores(train, test, num_classes=2, seeds=())


@pytest.mark.parametrize("seed", range(6))
def test_sensitivity_is_sklearn_recall_of_the_last_class(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes, n = 2 + seed % 2, 50 + 10 * seed
    probs = rng.dirichlet(np.ones(num_classes), size=n)
    truth = rng.integers(0, num_classes, size=n)

    scores = scores_from_probabilities(probs, truth)

    last = num_classes - 1
    expected = recall_score(truth, probs.argmax(1), labels=[last], average=None)[0]
    assert scores.sensitivity == pytest.approx(expected, abs=1e-12)


def test_perfect_ranking_with_a_collapsed_threshold_has_auroc_1_and_sensitivity_0() -> None:
    # What the reviewer saw: every V ranked above every N, but no V above probability 0.5.
    p_last = np.array([0.01, 0.02, 0.05, 0.1, 0.3, 0.4])
    truth = np.array([0, 0, 0, 0, 1, 1])

    scores = scores_from_probabilities(np.stack([1 - p_last, p_last], axis=1), truth)

    assert scores.auroc == 1.0 and scores.sensitivity == 0.0 and scores.balanced_accuracy == 0.5
