"""Utility on real patients: a fixed classifier trained on one set, tested on another.

Two classifiers: the project's small CNN (:func:`classifier_scores`) and, independent of
it, gradient-boosted trees on z-normalised samples (:func:`gbt_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medgan_core.data.labelled import LabelledSet
from medgan_core.metrics.names import AUROC, BALANCED_ACCURACY, BALANCED_ACCURACY_STD, MACRO_F1, SENSITIVITY, gain_key
from medgan_core.metrics.tstr import ClassifierScores, evaluate_classifier, train_classifier
from medgan_core.metrics.tstr_gbt import GbtConfig, evaluate_gbt, train_gbt

__all__ = ["augmentation_gain", "classifier_scores", "gbt_scores"]


def classifier_scores(train: LabelledSet, test: LabelledSet, *, num_classes: int, epochs: int,
                      seeds: Sequence[int], device: torch.device | str = "cpu") -> dict[str, float]:
    """The fixed small classifier trained on ``train``, tested on ``test``, averaged over seeds.

    Trained and tested on ``device``.

    Returns:
        Mean ``balanced_accuracy``, ``auroc`` (last class vs rest), ``macro_f1``,
        ``sensitivity`` (recall of the last class); the std of balanced accuracy over seeds
        (``balanced_accuracy_std``), ``num_test``, ``seeds``.

    Raises:
        ValueError: No seed.
    """
    if not seeds:
        raise ValueError("classifier_scores needs at least one seed")
    runs = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):  # train_classifier seeds the global RNG
            model = train_classifier(train.samples, train.labels, num_classes=num_classes,
                                     epochs=epochs, seed=int(seed), device=device)
        runs.append(evaluate_classifier(model, test.samples, test.labels))
    return _mean_over_seeds(runs, num_test=len(test))


def gbt_scores(train: LabelledSet, test: LabelledSet, *, num_classes: int, seeds: Sequence[int],
               config: GbtConfig = GbtConfig()) -> dict[str, float]:
    """Gradient-boosted trees on z-normalised samples trained on ``train``, tested on ``test``.

    The classifier independent of the project's CNN (:mod:`medgan_core.metrics.tstr_gbt`),
    one fit per seed, on the CPU.

    Returns:
        The keys of :func:`classifier_scores`.

    Raises:
        ValueError: No seed.
    """
    if not seeds:
        raise ValueError("gbt_scores needs at least one seed")
    runs = [evaluate_gbt(train_gbt(train.samples, train.labels, seed=int(seed), config=config),
                         test.samples, test.labels, num_classes=num_classes, config=config) for seed in seeds]
    return _mean_over_seeds(runs, num_test=len(test))


def _mean_over_seeds(runs: list[ClassifierScores], *, num_test: int) -> dict[str, float]:
    bacc = np.array([r.balanced_accuracy for r in runs])
    return {BALANCED_ACCURACY: float(bacc.mean()), AUROC: float(np.mean([r.auroc for r in runs])),
            MACRO_F1: float(np.mean([r.macro_f1 for r in runs])), SENSITIVITY: float(np.mean([r.sensitivity for r in runs])),
            BALANCED_ACCURACY_STD: float(bacc.std()), "num_test": num_test, "seeds": len(runs)}


def augmentation_gain(*, site: LabelledSet, synthetic: LabelledSet, test: LabelledSet, num_classes: int,
                      epochs: int, seeds: Sequence[int], device: torch.device | str = "cpu") -> dict:
    """A site's classifier on its own data alone vs its own data plus synthetic data.

    Both are tested on ``test``, whose patients must be disjoint from the site's: the
    question is whether the federation's synthetic data helps this hospital on patients
    it has never seen.

    Raises:
        ValueError: If either real set lacks patient ids, or they share a patient.
    """
    if not site.patients or not test.patients:
        raise ValueError("augmentation_gain needs patient ids on the site and test sets to prove they are disjoint")
    shared = sorted(set(site.patients) & set(test.patients))
    if shared:
        raise ValueError(f"test patients {shared} are also site training patients; test on held-out patients")
    alone = classifier_scores(site, test, num_classes=num_classes, epochs=epochs, seeds=seeds, device=device)
    combined = LabelledSet.concat([LabelledSet(site.samples, site.labels), synthetic])
    plus = classifier_scores(combined, test, num_classes=num_classes, epochs=epochs, seeds=seeds, device=device)
    gains = {gain_key(key): plus[key] - alone[key] for key in (BALANCED_ACCURACY, AUROC, MACRO_F1)}
    return {"own_data": alone, "own_plus_synthetic": plus, **gains,
            "site_patients": sorted(set(site.patients)), "test_patients": sorted(set(test.patients)),
            "num_site": len(site), "num_synthetic": len(synthetic)}
