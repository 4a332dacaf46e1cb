"""Utility on real patients: a fixed classifier trained on one set, tested on another.

Two classifiers: the project's small CNN (:func:`classifier_scores`) and, independent of
it, gradient-boosted trees on z-normalised samples (:func:`gbt_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medgan_core.data.labelled import LabelledSet
from medgan_core.metrics.names import AUROC, BALANCED_ACCURACY, BALANCED_ACCURACY_STD, MACRO_F1, SENSITIVITY, gain_key
from medgan_core.metrics.tstr import classifier_probabilities, scores_from_probabilities, train_classifier
from medgan_core.metrics.tstr_gbt import GbtConfig, gbt_probabilities, train_gbt

__all__ = ["PER_PATIENT_MAX", "augmentation_gain", "classifier_scores", "gbt_scores", "per_patient_scores"]

#: A test set of at most this many patients is also scored patient by patient: with few
#: held-out patients one unusual patient can decide the pooled score, and the breakdown shows
#: it. More patients than this (the X-ray hold-out has hundreds, a few images each) would
#: give a table of single-class rows that says nothing.
PER_PATIENT_MAX = 10


def classifier_scores(train: LabelledSet, test: LabelledSet, *, num_classes: int, epochs: int,
                      seeds: Sequence[int], device: torch.device | str = "cpu",
                      per_patient: bool = False) -> dict[str, Any]:
    """The fixed small classifier trained on ``train``, tested on ``test``, averaged over seeds.

    Trained and tested on ``device``.

    Returns:
        Mean ``balanced_accuracy``, ``auroc`` (last class vs rest), ``macro_f1``,
        ``sensitivity`` (recall of the last class); the std of balanced accuracy over seeds
        (``balanced_accuracy_std``), ``num_test``, ``seeds``; with ``per_patient`` and a test
        set of at most :data:`PER_PATIENT_MAX` patients, ``per_patient``
        (:func:`per_patient_scores`).

    Raises:
        ValueError: No seed.
    """
    if not seeds:
        raise ValueError("classifier_scores needs at least one seed")
    probabilities = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):  # train_classifier seeds the global RNG
            model = train_classifier(train.samples, train.labels, num_classes=num_classes,
                                     epochs=epochs, seed=int(seed), device=device)
        probabilities.append(classifier_probabilities(model, test.samples))
    return _mean_over_seeds(probabilities, test, per_patient=per_patient)


def gbt_scores(train: LabelledSet, test: LabelledSet, *, num_classes: int, seeds: Sequence[int],
               config: GbtConfig = GbtConfig(), per_patient: bool = False) -> dict[str, Any]:
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
    probabilities = [gbt_probabilities(train_gbt(train.samples, train.labels, seed=int(seed), config=config),
                                       test.samples, num_classes=num_classes, config=config) for seed in seeds]
    return _mean_over_seeds(probabilities, test, per_patient=per_patient)


def per_patient_scores(probabilities: Sequence[np.ndarray], test: LabelledSet) -> dict[str, dict[str, Any]]:
    """Each test patient's scores from one classifier's probabilities per seed, averaged over seeds.

    Args:
        probabilities: Per seed, (len(test), num_classes) class probabilities on ``test``.
        test: The test set, with a patient id per record.

    Returns:
        ``{patient: {"num_per_class": [...], "recall_per_class": [...], "auroc": float}}``:
        the patient's records of each class, the share of each class predicted as that class
        at the default threshold (NaN for a class the patient has none of), and AUROC of the
        last class against the rest (NaN unless the patient has both).

    Raises:
        ValueError: ``test`` has no patient ids.
    """
    if not test.patients:
        raise ValueError("per_patient_scores needs patient ids on the test set")
    patients = np.asarray(test.patients)
    truth = test.labels.numpy()
    num_classes = probabilities[0].shape[1]
    result: dict[str, dict[str, Any]] = {}
    for patient in sorted(set(test.patients)):
        mine = patients == patient
        their_truth = truth[mine]
        per_seed = [scores_from_probabilities(p[mine], their_truth) for p in probabilities]
        predicted = [p[mine].argmax(1) for p in probabilities]
        counts = [int((their_truth == c).sum()) for c in range(num_classes)]
        recall = [float(np.mean([(pred[their_truth == c] == c).mean() for pred in predicted])) if counts[c] else float("nan")
                  for c in range(num_classes)]
        result[patient] = {"num_per_class": counts, "recall_per_class": recall,
                           AUROC: float(np.mean([s.auroc for s in per_seed]))}
    return result


def _mean_over_seeds(probabilities: list[np.ndarray], test: LabelledSet, *, per_patient: bool) -> dict[str, Any]:
    truth = test.labels.numpy()
    runs = [scores_from_probabilities(p, truth) for p in probabilities]
    bacc = np.array([r.balanced_accuracy for r in runs])
    scores: dict[str, Any] = {
        BALANCED_ACCURACY: float(bacc.mean()), AUROC: float(np.mean([r.auroc for r in runs])),
        MACRO_F1: float(np.mean([r.macro_f1 for r in runs])), SENSITIVITY: float(np.mean([r.sensitivity for r in runs])),
        BALANCED_ACCURACY_STD: float(bacc.std()), "num_test": len(test), "seeds": len(runs)}
    if per_patient and test.patients and len(set(test.patients)) <= PER_PATIENT_MAX:
        scores["per_patient"] = per_patient_scores(probabilities, test)
    return scores


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
